"""End to end on loopback: our store (daemon + nine local agents) against
Tahoe-LAFS (introducer + nine storage nodes + a client node, shares 6 of
9), the same files through each one's HTTP API from the same client code:
one 1 GiB file up and down, then 10,000 files of 4 KiB up and down with
8 requests at once. Memory is each process's peak RSS during the step
(VmHWM, reset before it); CPU is user + system seconds of every process
of the system under test during the step.
"""

import concurrent.futures
import hashlib
import http.client
import os
import shutil
import tempfile
import threading
import time
import urllib.parse

from .common import CACHE, CLI, MIB, content_file, step_row
from .common import measured as common_measured
from ..faults import harness
from . import hotspots
from ..peers import tahoe

SMALL = 4096
THREADS = 8


class Ours:
    name = "cloudshell store"

    def __init__(self, work):
        self.daemon = harness.Daemon(CLI, os.path.join(work, "store"))
        self.daemon.start()
        self.daemon.wait_connected(9)
        self.agents = [n["agent_pid"] for n in self.daemon.nodes()]
        u = urllib.parse.urlsplit(self.daemon.url)
        self.netloc = u.netloc
        self.local = threading.local()

    @property
    def front(self):
        return self.daemon.pid

    @property
    def back(self):
        return self.agents

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection(self.netloc, timeout=600,
                                                             blocksize=MIB)
        return c

    def _call(self, method, path, body=None, headers=None):
        c = self._conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        harness.check(200 <= r.status < 300, f"{method} {path}: {r.status} {data[:200]!r}")
        return data

    def put_file(self, path):
        with open(path, "rb") as f:
            self._call("PUT", "/api/files/big", body=f,
                       headers={"Content-Length": str(os.path.getsize(path))})
        return "big"

    def get_file(self, ref, out):
        c = self._conn()
        c.request("GET", "/api/files/" + ref)
        r = c.getresponse()
        harness.check(r.status == 200, f"GET {ref}: {r.status}")
        with open(out, "wb") as f:
            while block := r.read(MIB):
                f.write(block)

    def put_bytes(self, i, data):
        name = f"small/{i:05}"
        self._call("PUT", "/api/files/" + name, body=data)
        return name

    def get_bytes(self, ref):
        return self._call("GET", "/api/files/" + ref)

    def close(self):
        self.daemon.kill()


class Tahoe:
    name = "Tahoe-LAFS"

    def __init__(self, work):
        exe = tahoe.ensure_venv(os.path.join(CACHE, "tahoe-venv"))
        # Foolscap: Tahoe's faster storage protocol (its HTTPS one, the
        # default since 1.19, was 2-3 times slower here for small files).
        self.grid = tahoe.Grid(exe, os.path.join(work, "tahoe"), storage_nodes=9,
                               needed=6, total=9, happy=9, force_foolscap=True)
        self.grid.__enter__()

    @property
    def front(self):
        return self.grid.client_pid

    @property
    def back(self):
        return self.grid.storage_pids + [self.grid.introducer_pid]

    def put_file(self, path):
        return self.grid.put_file(path)

    def get_file(self, ref, out):
        self.grid.get_file(ref, out)

    def put_bytes(self, i, data):
        return self.grid.put_bytes(data)

    def get_bytes(self, ref):
        return self.grid.get_bytes(ref)

    def close(self):
        self.grid.__exit__(None, None, None)


def measured(system, step, fn):
    """common.measured over the system's front process and back ones."""
    return common_measured(f"{system.name} {step}", [system.front], system.back, fn)


def run_system(cls, big, files, small, profiled=False):
    work = tempfile.mkdtemp(prefix="bench-e2e-")
    system = None
    try:
        t = time.monotonic()
        system = cls(work)
        ready = time.monotonic() - t
        out = {"ready": ready}
        ref = {}
        back = os.path.join(work, "back")
        out["put 1 GiB"] = measured(system, "put big", lambda: ref.setdefault("big", system.put_file(big)))
        out["get 1 GiB"] = measured(system, "get big", lambda: system.get_file(ref["big"], back))
        harness.check(_same(big, back), f"{system.name} returned other bytes for the big file")
        os.unlink(back)
        refs = [None] * files

        def put_all():
            with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
                for i, r in enumerate(pool.map(lambda i: system.put_bytes(i, small(i)), range(files))):
                    refs[i] = r

        def get_all():
            with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
                for i, data in enumerate(pool.map(system.get_bytes, refs)):
                    harness.check(data == small(i), f"{system.name}: small file {i} came back wrong")

        out["put 4 KiB files"] = measured(system, f"put {files} small", put_all)
        out["get 4 KiB files"] = measured(system, f"get {files} small", get_all)
        if profiled:
            # Once more under perf, after the timed steps (sampling slows
            # them a little).
            pids = [system.front, *system.back]
            out["profile"] = {
                "put 1 GiB": hotspots.record(pids, lambda: system.put_file(big)),
                "get 1 GiB": hotspots.record(pids, lambda: system.get_file(ref["big"], back)),
                "put 4 KiB files": hotspots.record(pids, lambda: [
                    system.put_bytes(i, small(i)) for i in range(min(files, 1000))]),
                "get 4 KiB files": hotspots.record(pids, lambda: [
                    system.get_bytes(r) for r in refs[:1000]]),
            }
        return out
    finally:
        if system:
            system.close()
        harness.kill_under(work)
        shutil.rmtree(work, ignore_errors=True)


def _same(a, b):
    def digest(p):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(MIB):
                h.update(block)
        return h.digest()
    return os.path.getsize(a) == os.path.getsize(b) and digest(a) == digest(b)


def run(size_mib=1024, files=10_000):
    work = tempfile.mkdtemp(prefix="bench-e2e-in-")
    try:
        big = os.path.join(work, "big")
        content_file(big, size_mib * MIB, seed=5)
        seeds = {}

        def small(i):
            if i not in seeds:
                seeds[i] = hashlib.shake_256(f"small-{i}".encode()).digest(SMALL)
            return seeds[i]
        results = {}
        for cls in (Ours, Tahoe):
            results[cls.name] = run_system(cls, big, files, small, profiled=cls is Ours)
        return dict(size=size_mib * MIB, files=files, results=results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(r):
    ours, peer = r["results"]["cloudshell store"], r["results"]["Tahoe-LAFS"]
    size, files = r["size"], r["files"]
    lines = ["| step | cloudshell store | Tahoe-LAFS | Tahoe time / ours | "
             "front RSS ours / Tahoe MiB | back RSS ours / Tahoe MiB | CPU s ours / Tahoe |",
             "|---|---|---|---|---|---|---|"]
    for step in ("put 1 GiB", "get 1 GiB", "put 4 KiB files", "get 4 KiB files"):
        a, b = ours[step], peer[step]
        label, rate = step_row(step, size, files, "files")
        lines.append(f"| {label} | {rate(a['wall'])} | {rate(b['wall'])} | {b['wall'] / a['wall']:.2f}x | "
                     f"{a['front']:.0f} / {b['front']:.0f} | {a['back']:.0f} / {b['back']:.0f} | "
                     f"{a['cpu']:.0f} / {b['cpu']:.0f} |")
    lines += ["", f"Ready (start to all nine storage nodes connected): ours "
              f"{ours['ready']:.1f} s, Tahoe {peer['ready']:.1f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    res = run(int(sys.argv[1]) if len(sys.argv) > 1 else 1024,
              int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    print(markdown(res))


def analysis(r):
    ours, peer = r["results"]["cloudshell store"], r["results"]["Tahoe-LAFS"]
    speed = {k: peer[k]["wall"] / ours[k]["wall"] for k in
             ("put 1 GiB", "get 1 GiB", "put 4 KiB files", "get 4 KiB files")}
    cpu = {k: peer[k]["cpu"] / max(ours[k]["cpu"], 0.01) for k in speed}
    front = max(ours[k]["front"] for k in speed), max(peer[k]["front"] for k in speed)
    back = max(ours[k]["back"] for k in speed), max(peer[k]["back"] for k in speed)
    return (f"Ours moved the large file {speed['put 1 GiB']:.1f}x as fast as Tahoe-LAFS up "
            f"and {speed['get 1 GiB']:.1f}x down, and the small files {speed['put 4 KiB files']:.1f}x "
            f"and {speed['get 4 KiB files']:.1f}x, for {cpu['put 1 GiB']:.1f}x to "
            f"{max(cpu.values()):.0f}x less CPU. Tahoe's client node is the smaller front "
            f"({front[1]:.0f} MiB at most against our daemon's {front[0]:.0f}, which also "
            f"holds the embedded emulator and up to 256 shards in memory across transfers); "
            f"its nine storage nodes and introducer took {back[1]:.0f} MiB against our nine "
            f"agents' {back[0]:.0f}. Both write every share to a file on the same disk; ours "
            f"fsyncs each one, so the small-file figures are mostly nine fsyncs and an index "
            f"commit per file.")
