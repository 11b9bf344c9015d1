"""The load scenario: 16 clients mixing put, get, list and delete against
one daemon for ten minutes, every read checked against what was written."""

import os
import random
import threading
import time

from .harness import Daemon, check, content, rss_mib, sha256

OPS = ("put", "get", "list", "delete")
WEIGHTS = (4, 4, 1, 1)


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def load(cli, work, opts):
    """16 clients, each with its own files, pick put (40 %), get (40 %),
    list (10 %) or delete (10 %) at random for ten minutes; file sizes
    from 0 to 4 MiB, mostly small. Every get is compared with the last
    put of that name; every answer must be a success. Daemon RSS is
    sampled every ten seconds."""
    minutes = 1 if opts.quick else opts.load_minutes
    clients = 16
    d = Daemon(cli, os.path.join(work, "store"))
    d.start()
    try:
        d.wait_connected(9)
        stop = time.monotonic() + minutes * 60
        lock = threading.Lock()
        latencies = {op: [] for op in OPS}
        moved = {"put": 0, "get": 0}
        errors = []
        rss = []

        def client(c):
            r = random.Random(opts.seed * 100 + c)
            mine = {}
            n = 0
            while time.monotonic() < stop:
                op = r.choices(OPS, WEIGHTS)[0]
                if op in ("get", "delete") and not mine:
                    op = "put"
                t = time.monotonic()
                if op == "put":
                    name = f"load/c{c:02d}/{n:05d}.bin"
                    n += 1
                    size = min(int(r.paretovariate(1.1) * 8_000), 4 << 20)
                    data = content(c * 1_000_000 + n, size)
                    status, body = d.put(name, data)
                    ok = status == 201
                    if ok:
                        mine[name] = sha256(data)
                        nbytes = size
                elif op == "get":
                    name = r.choice(sorted(mine))
                    status, body = d.get(name)
                    ok = status == 200 and sha256(body) == mine[name]
                    nbytes = len(body)
                elif op == "list":
                    status, body = d.request("GET", "/api/files")
                    ok = status == 200
                else:
                    name = r.choice(sorted(mine))
                    status, body = d.request("DELETE", "/api/files/" + name)
                    ok = status == 204
                    if ok:
                        del mine[name]
                elapsed = time.monotonic() - t
                with lock:
                    latencies[op].append(elapsed)
                    if not ok:
                        errors.append(f"{op}: {status} {body[:120]!r}")
                    elif op in moved:
                        moved[op] += nbytes

        def sampler():
            started = time.monotonic()
            while time.monotonic() < stop:
                rss.append((time.monotonic() - started, rss_mib(d.pid)))
                time.sleep(10)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        threads.append(threading.Thread(target=sampler))
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        secs = time.monotonic() - started
        check(not errors, f"{len(errors)} requests failed: {errors[:3]}")
        total = sum(len(v) for v in latencies.values())
        figures = [
            ("clients", f"{clients} for {secs / 60:.1f} min"),
            ("requests", f"{total} ({total / secs:.0f}/s), 0 errors; "
                         f"{moved['put'] / secs / 1e6:.1f} MB/s in, "
                         f"{moved['get'] / secs / 1e6:.1f} MB/s out"),
        ]
        for op in OPS:
            v = latencies[op]
            figures.append((op, f"{len(v)}: p50 {percentile(v, 50) * 1000:.0f} ms, "
                                f"p99 {percentile(v, 99) * 1000:.0f} ms"))
        marks = [rss[0], rss[len(rss) // 2], rss[-1]] if rss else []
        figures.append(("daemon RSS", ", ".join(f"{m:.0f} MiB at {t / 60:.1f} min"
                                                 for t, m in marks)
                        + (f"; peak {max(m for _, m in rss):.0f} MiB" if rss else "")))
        return figures
    finally:
        d.kill()
