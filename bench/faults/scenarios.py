"""The fault scenarios. Each takes the `cloudshell` binary, a work
directory and its options, raises harness.Failed when what it checks does
not hold, and returns its figures as (label, value) pairs for the report.
"""

import concurrent.futures
import json
import os
import random
import signal
import threading
import time
import zlib

from .bad_input import bad_input
from .correctness import SCENARIOS as CORRECTNESS
from .fuzz import fuzz
from .load import load
from .security import security
from .harness import (MIB, Daemon, Emulator, Failed, check, content, mixed_sizes, rng, sha256,
                      wait_until)


def upload_all(d, files, threads=4):
    """PUTs {name: (seed, size)}; returns {name: sha256} and seconds."""
    def one(item):
        name, (seed, size) = item
        data = content(seed, size)
        status, body = d.put(name, data)
        check(status == 201, f"PUT {name}: {status} {body[:200]!r}")
        return name, sha256(data)

    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        done = dict(pool.map(one, files.items()))
    return done, time.monotonic() - t


def read_all(d, expected, threads=4):
    """GETs every file; returns (bytes read, seconds, [names that differ])."""
    def one(item):
        name, digest = item
        status, body = d.get(name)
        ok = status == 200 and sha256(body) == digest
        return len(body), None if ok else f"{name} ({status}, {len(body)} bytes)"

    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, expected.items()))
    bad = [b for _, b in results if b]
    return sum(n for n, _ in results), time.monotonic() - t, bad


def mbps(nbytes, seconds):
    return f"{nbytes / max(seconds, 1e-9) / 1e6:.0f} MB/s"


# --- 1. any three agents killed ---------------------------------------------

def agents_killed(cli, work, opts):
    """1,000 files (0 B to 50 MiB, at least 2 GiB); in each round three
    agents chosen at random are SIGKILLed and every file is read back at
    once and compared; then the daemon brings the agents back."""
    r = rng(opts.seed)
    count, rounds = opts.files, opts.rounds
    sizes = mixed_sizes(count, opts.total_mib * MIB, 50 * MIB, r)
    files = {f"set/{i:04d}-{s}.bin": (i, s) for i, s in enumerate(sizes)}
    d = Daemon(cli, os.path.join(work, "store"))
    figures = [("daemon ready", f"{d.start():.1f} s")]
    try:
        expected, put_s = upload_all(d, files)
        total = sum(sizes)
        figures += [("files", f"{count} ({min(sizes)} B to {max(sizes) / MIB:.0f} MiB)"),
                    ("bytes", f"{total / 2**30:.2f} GiB"),
                    ("put", f"{put_s:.0f} s, {mbps(total, put_s)}")]
        worst_read, back = 0.0, []
        for n in range(1, rounds + 1):
            nodes = d.connected()
            check(len(nodes) == 9, f"round {n}: only {len(nodes)} nodes connected")
            victims = r.sample(nodes, 3)
            for v in victims:
                os.kill(v["agent_pid"], 9)
            nbytes, secs, bad = read_all(d, expected)
            check(not bad, f"round {n}: {len(bad)} files read wrong with "
                  f"{[v['region'] for v in victims]} down: {bad[:5]}")
            worst_read = max(worst_read, secs)
            # Counted from the kill: the reads ran meanwhile.
            back.append(secs + d.wait_restarted(victims))
            figures.append((f"round {n}", f"killed {', '.join(v['region'] for v in victims)}; "
                            f"{count} files bit-exact, {mbps(nbytes, secs)}; "
                            f"new agents serving {back[-1]:.0f} s after the kill"))
        figures.append(("result", f"{rounds} rounds x {count} files: 0 read wrong; "
                        f"slowest full read {worst_read:.0f} s"))
    finally:
        d.kill()
    return figures


# --- 2. shards corrupted and deleted on disk --------------------------------

def corruption(cli, work, opts):
    """Random shards deleted, bit-flipped or truncated on the agents' disks,
    never more than m = 3 in one chunk: every read is still bit-exact (no
    corrupted byte served), one scrub finds every damaged shard and
    rebuilds it, and a second scrub finds nothing."""
    r = rng(opts.seed + 2)
    d = Daemon(cli, os.path.join(work, "store"))
    d.start()
    try:
        sizes = mixed_sizes(200, 256 * MIB, 20 * MIB, r)
        files = {f"c/{i:03d}.bin": (1000 + i, s) for i, s in enumerate(sizes)}
        expected, _ = upload_all(d, files)
        shards = d.shard_files()
        by_chunk = {}
        for path, fid, chunk, index in shards:
            by_chunk.setdefault((fid, chunk), []).append(path)
        hurt = r.sample(sorted(by_chunk), min(opts.damaged_chunks, len(by_chunk)))
        kinds = {"deleted": 0, "flipped": 0, "truncated": 0}
        for key in hurt:
            for path in r.sample(by_chunk[key], r.randint(1, 3)):
                kind = r.choice(sorted(kinds))
                if kind == "deleted":
                    os.remove(path)
                elif kind == "flipped":
                    with open(path, "r+b") as f:
                        size = os.fstat(f.fileno()).st_size
                        at = r.randrange(size)
                        f.seek(at)
                        b = f.read(1)
                        f.seek(at)
                        f.write(bytes([b[0] ^ (1 << r.randrange(8))]))
                else:
                    with open(path, "r+b") as f:
                        f.truncate(r.randrange(os.fstat(f.fileno()).st_size))
                kinds[kind] += 1
        injected = sum(kinds.values())
        nbytes, secs, bad = read_all(d, expected)
        check(not bad, f"damaged shards were served: {bad[:5]}")
        first = d.scrub()
        found = first["missing"] + first["corrupt"]
        check(first["missing"] == kinds["deleted"],
              f"scrub found {first['missing']} missing, {kinds['deleted']} deleted")
        check(first["corrupt"] == kinds["flipped"] + kinds["truncated"],
              f"scrub found {first['corrupt']} corrupt, "
              f"{kinds['flipped'] + kinds['truncated']} flipped or truncated")
        check(first["shards_rebuilt"] == injected,
              f"scrub rebuilt {first['shards_rebuilt']} of {injected}")
        second = d.scrub()
        check(second["missing"] == 0 and second["corrupt"] == 0,
              f"a second scrub still found {second['missing']} missing, "
              f"{second['corrupt']} corrupt")
        _, _, bad = read_all(d, expected)
        check(not bad, f"after repair: {bad[:5]}")
        return [
            ("files", f"{len(files)}, {sum(sizes) / MIB:.0f} MiB, {len(shards)} shards on disk"),
            ("damage", f"{len(hurt)} chunks, {injected} shards: {kinds['deleted']} deleted, "
                       f"{kinds['flipped']} with a bit flipped, {kinds['truncated']} truncated"),
            ("reads before repair", f"{len(files)} files bit-exact ({mbps(nbytes, secs)})"),
            ("scrub 1", f"{first['shards_checked']} shards hashed in place; found "
                        f"{first['missing']} missing + {first['corrupt']} corrupt = {found} "
                        f"of {injected}; rebuilt {first['shards_rebuilt']}"),
            ("scrub 2", f"0 missing, 0 corrupt; all {len(files)} files bit-exact"),
        ]
    finally:
        d.kill()


# --- 3. the daemon SIGKILLed during uploads ---------------------------------

def daemon_killed(cli, work, opts):
    """The daemon is SIGKILLed at a random moment while four clients upload,
    again and again: after each restart every visible file is whole and
    right (none half-written), every file acknowledged before stays
    intact, and a scrub collects the shards the cut uploads left."""
    r = rng(opts.seed + 3)
    d = Daemon(cli, os.path.join(work, "store"))
    d.start()
    try:
        base = {f"base/{i:02d}.bin": (5000 + i, r.randrange(0, 8 * MIB)) for i in range(20)}
        known, _ = upload_all(d, base)
        attempted = {}
        visible_partial = acked_total = cut_total = 0
        restarts = []
        for n in range(1, opts.kills + 1):
            stop = threading.Event()
            acked = {}

            def uploader(w):
                i = 0
                while not stop.is_set():
                    name = f"run{n:02d}/w{w}-{i}.bin"
                    seed, size = 10_000 * n + 100 * w + i, r.randrange(0, 24 * MIB)
                    data = content(seed, size)
                    attempted[name] = sha256(data)
                    try:
                        status, _ = d.put(name, data)
                    except OSError:
                        return
                    if status == 201:
                        acked[name] = attempted[name]
                    i += 1

            workers = [threading.Thread(target=uploader, args=(w,)) for w in range(4)]
            for w in workers:
                w.start()
            time.sleep(r.uniform(0.5, 6.0))
            d.kill()
            stop.set()
            for w in workers:
                w.join()
            restarts.append(d.start())
            listed = d.files()
            for name in listed:
                if name.startswith(f"run{n:02d}/"):
                    status, body = d.get(name)
                    if status != 200 or sha256(body) != attempted[name]:
                        visible_partial += 1
            check(visible_partial == 0, f"kill {n}: a cut upload is visible and wrong")
            missing = [k for k in acked if k not in listed]
            check(not missing, f"kill {n}: acknowledged files gone: {missing[:5]}")
            acked_total += len(acked)
            cut_total += sum(1 for k in attempted if k.startswith(f"run{n:02d}/")
                             and k not in listed)
            known.update(acked)
            # Those that made it without an answer are whole: keep them too.
            known.update({k: attempted[k] for k in listed if k in attempted})
        d.wait_connected(9)
        _, _, bad = read_all(d, known)
        check(not bad, f"after {opts.kills} kills: {bad[:5]}")
        orphans_before = len(d.shard_files())
        scrub = d.scrub()
        on_disk, expected_shards = d.shard_counts()
        check(on_disk == expected_shards,
              f"after the scrub {on_disk} shards on disk, the index names {expected_shards}")
        return [
            ("kills", f"{opts.kills}, each 0.5-6 s into four clients' uploads (0-24 MiB files)"),
            ("uploads", f"{acked_total} acknowledged, all kept; {cut_total} cut, none visible; "
                        f"0 visible and wrong"),
            ("restart", f"ready again in {min(restarts):.1f}-{max(restarts):.1f} s"),
            ("files after", f"{len(known)} read back bit-exact"),
            ("orphans", f"{orphans_before - on_disk} shard files of cut uploads collected by "
                        f"one scrub ({scrub['orphans_deleted']} reported); disk = index "
                        f"({on_disk} shards)"),
        ]
    finally:
        d.kill()


# --- 4. environments reclaimed ----------------------------------------------

def wait_redundant(d, timeout=900):
    """Waits until every file survives losing m nodes again."""
    def weak():
        return [f["name"] for f in d.files().values() if f["health"]["state"] != "healthy"]
    _, waited = wait_until(lambda: not weak(), timeout,
                           lambda _: f"files still not fully redundant after {timeout} s: "
                           f"{weak()[:3]}", every=1)
    return waited


def reclaimed(cli, work, opts):
    """Three environments are stopped behind the daemon's back and reclaimed
    by the emulator (their processes killed, their homes wiped, as AWS
    does to an environment long suspended). With no one doing anything,
    the daemon starts them again, installs its agent anew and rebuilds
    their shards; then any three other nodes may go and every file still
    reads back bit-exact."""
    r = rng(opts.seed + 4)
    emu = Emulator(cli, os.path.join(work, "emulator"), ["--reclaim-after", "1s"])
    d = Daemon(cli, os.path.join(work, "store"), emulator=emu)
    try:
        d.start()
        d.wait_connected(9)
        sizes = mixed_sizes(opts.files // 5, opts.total_mib * MIB // 8, 20 * MIB, r)
        files = {f"r/{i:03d}.bin": (2000 + i, s) for i, s in enumerate(sizes)}
        expected, _ = upload_all(d, files)
        victims = r.sample(d.connected(), 3)
        lost_shards = 0
        t0 = time.monotonic()
        for v in victims:
            home = emu.home(v["environment_id"])
            lost_shards += sum(1 for p, *_ in d.shard_files() if p.startswith(home + "/"))
            emu.cloudshell(v["region"], "stop", v["environment_id"], "--wait")
        for v in victims:
            def reason(v=v):
                st = emu.cloudshell(v["region"], "status", v["environment_id"])
                return "reclaimed" in (st.get("status_reason") or st.get("StatusReason") or "")
            wait_until(reason, 30, lambda _, v=v: f"{v['region']} was not reclaimed")
            check(not os.path.exists(os.path.join(emu.home(v["environment_id"]),
                                                  ".cloudshell-agent")),
                  f"{v['region']}: the home was not wiped")
            check(not os.path.exists(f"/proc/{v['agent_pid']}"),
                  f"{v['region']}: the agent outlived its environment")
        back = d.wait_restarted(victims)
        healed = wait_redundant(d)
        restored = time.monotonic() - t0
        rebuilt = sum(1 for p, *_ in d.shard_files()
                      if any(p.startswith(emu.home(v["environment_id"]) + "/") for v in victims))
        check(rebuilt == lost_shards,
              f"{rebuilt} shards rebuilt on the reclaimed nodes, {lost_shards} were lost")
        others = r.sample([n for n in d.connected()
                           if n["id"] not in {v["id"] for v in victims}], 3)
        for n in others:
            os.kill(n["agent_pid"], 9)
        nbytes, secs, bad = read_all(d, expected)
        check(not bad, f"with three other nodes down: {bad[:5]}")
        return [
            ("files", f"{len(files)}, {sum(sizes) / MIB:.0f} MiB"),
            ("reclaimed", f"{', '.join(v['region'] for v in victims)}: stopped, agents killed, "
                          f"homes wiped ({lost_shards} shards gone)"),
            ("agents back", f"{back:.0f} s after the reclaim (environment started, agent "
                            f"installed again)"),
            ("redundancy restored", f"{restored:.0f} s after the stop "
                                    f"({healed:.0f} s after the agents came back); "
                                    f"{rebuilt} shards rebuilt, no user action"),
            ("then", f"{', '.join(n['region'] for n in others)} killed: {len(files)} files "
                     f"bit-exact ({mbps(nbytes, secs)})"),
        ]
    finally:
        d.kill()
        emu.kill()


# --- 5. a node full, a node slow, a node flapping ---------------------------

# Files up to this size in the slow and flapping runs: small enough that
# the twelve agents' default quotas hold everything the clients manage to
# upload, at any speed the store reaches here.
UPLOAD_LARGEST = 2 * MIB
# Twelve emulated regions: nine shards a chunk and three spares.
TWELVE = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1",
          "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
          "ap-southeast-1", "ap-southeast-2"]

def keep_uploading(d, prefix, seconds, r, workers=4, largest=8 * MIB):
    """Four clients PUT new files for `seconds`; returns ({name: sha256}
    acknowledged, {name: sha256} attempted, [(status, error code,
    message)] of the refusals)."""
    stop = time.monotonic() + seconds
    acked, attempted, refused = {}, {}, []
    lock = threading.Lock()

    def client(w):
        i = 0
        while time.monotonic() < stop:
            name = f"{prefix}/w{w}-{i:04d}.bin"
            data = content(zlib.crc32(name.encode()), r.randrange(0, largest))
            with lock:
                attempted[name] = sha256(data)
            status, body = d.put(name, data)
            with lock:
                if status == 201:
                    acked[name] = attempted[name]
                else:
                    err = json.loads(body)["error"]
                    refused.append((status, err["code"], err["message"]))
            i += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked, attempted, refused


def check_nothing_half_visible(d, attempted, acked, what):
    """Every acknowledged file is listed; every listed one reads right."""
    listed = d.files()
    gone = [n for n in acked if n not in listed]
    check(not gone, f"{what}: acknowledged files not listed: {gone[:3]}")
    wrong = []
    for name in listed:
        if name in attempted:
            status, body = d.get(name)
            if status != 200 or sha256(body) != attempted[name]:
                wrong.append(name)
    check(not wrong, f"{what}: listed files that do not read back right: {wrong[:3]}")
    return sum(1 for n in listed if n in attempted)


def refusals(refused):
    if not refused:
        return "none"
    kinds = {}
    for status, code, _ in refused:
        kinds[f"{status} {code}"] = kinds.get(f"{status} {code}", 0) + 1
    return ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items()))


def node_trouble(cli, work, opts):
    """Nodes that misbehave without dying. Full: every agent's quota is
    small and uploads go on until a node is full: the upload that does not
    fit is refused whole with 507 StoreFull and a message saying what to
    do, nothing of it stays visible or on disk, and deleting files makes
    room again. Slow and flapping run on twelve regions, so a chunk's nine
    shards always have spare nodes: one agent frozen (SIGSTOP) three
    seconds in four while clients upload and read, then one agent after
    another killed every few seconds while clients upload. With nine or
    more nodes serving no upload may fail (writes a node does not
    acknowledge in time go to a spare), and the rate is compared with the
    healthy one; nothing is half-visible, and once the nodes settle every
    file is fully redundant again and survives any three losses."""
    r = rng(opts.seed + 5)
    figures = []
    # Full.
    conf = os.path.join(work, "small.toml")
    with open(conf, "w") as f:
        f.write('agent_quota = "40M"\n')
    d = Daemon(cli, os.path.join(work, "full"), extra=["--config", conf])
    d.start()
    try:
        d.wait_connected(9)
        stored, refused, n = {}, None, 0
        while refused is None:
            check(n < 200, "200 files of 4 MiB went into nine 40 MiB nodes")
            name = f"full/{n:03d}.bin"
            data = content(30_000 + n, 4 * MIB)
            status, body = d.put(name, data)
            if status == 201:
                stored[name] = sha256(data)
            else:
                refused = (name, data, status, json.loads(body)["error"])
            n += 1
        name, data, status, err = refused
        check(status == 507 and err["code"] == "StoreFull",
              f"a full node answered {status} {err}")
        check("full" in err["message"] and "deleting" in err["message"],
              f"the refusal does not say what is wrong and what to do: {err['message']}")
        check(name not in d.files(), "the refused upload is visible")
        on_disk, in_index = d.shard_counts()
        check(on_disk == in_index,
              f"the refused upload left shards: {on_disk} on disk, {in_index} in the index")
        _, _, bad = read_all(d, stored)
        check(not bad, f"files stored before the node filled: {bad[:3]}")
        for old in sorted(stored)[:3]:
            check(d.request("DELETE", "/api/files/" + old)[0] == 204, f"DELETE {old}")
            del stored[old]
        again, body = d.put(name, data)
        check(again == 201, f"after deleting files, the upload still fails: {again} {body[:200]!r}")
        figures += [
            ("full", f"{len(stored) + 2} files of 4 MiB fit in nine 40 MiB nodes; the next was "
                     f"refused whole: {status} StoreFull, \"{err['message'][:160]}...\"; no shard "
                     f"of it left; after 3 deletes it went in"),
        ]
    finally:
        d.kill()
    more, _ = slow_and_flapping(cli, work, r)
    return figures + more


def slow_and_flapping(cli, work, r):
    """The hedged-write scenarios of node-trouble (and of `bench/run`):
    twelve regions, four clients uploading 0-2 MiB files, healthy, with one
    agent frozen 3 s in 4, and with an agent killed every 6 s. Returns the
    figures and the rates: healthy uploads/s, and the frozen and flapping
    rates as fractions of it."""
    figures = []
    d = Daemon(cli, os.path.join(work, "store"), extra=["--regions", ",".join(TWELVE)])
    d.start()
    try:
        d.wait_connected(len(TWELVE))
        # Slow: the same uploads, healthy and then with one node frozen 3 s in 4.
        base_acked, base_attempted, base_refused = keep_uploading(d, "healthy", 20, r, largest=UPLOAD_LARGEST)
        slow = r.choice(d.connected())
        freezing = threading.Event()

        def freezer():
            while not freezing.is_set():
                os.kill(slow["agent_pid"], signal.SIGSTOP)
                time.sleep(3)
                os.kill(slow["agent_pid"], signal.SIGCONT)
                time.sleep(1)

        t = threading.Thread(target=freezer)
        t.start()
        try:
            acked, attempted, refused = keep_uploading(d, "slow", 20, r, largest=UPLOAD_LARGEST)
            reads = {k: acked[k] for k in list(acked)[:20]}
            nbytes, secs, bad = read_all(d, reads)
        finally:
            freezing.set()
            t.join()
            os.kill(slow["agent_pid"], signal.SIGCONT)
        check(not bad, f"with a slow node: {bad[:3]}")
        check_nothing_half_visible(d, attempted, acked, "slow node")
        check(not refused, f"uploads failed with eleven nodes serving: {refusals(refused)}: "
                           f"{refused[0][2] if refused else ''}")
        healthy_rate = len(base_acked) / 20
        frozen_rate = len(acked) / 20
        figures += [
            ("healthy", f"{len(base_acked)} uploads in 20 s by 4 clients (0-{UPLOAD_LARGEST // MIB} MiB files), "
                        f"12 regions"),
            ("slow", f"{slow['region']} frozen 3 s in 4: {len(acked)} uploads in 20 s, "
                     f"{len(acked) / 20 / healthy_rate:.2f} of the healthy rate; refused: "
                     f"{refusals(refused)}; reads {mbps(nbytes, secs)}"),
        ]
        # Flapping: a random agent killed every 6 s.
        flapping = threading.Event()
        kills = []

        def flapper():
            while not flapping.wait(6):
                up = d.connected()
                if up:
                    victim = r.choice(up)
                    try:
                        os.kill(victim["agent_pid"], 9)
                        kills.append(victim["region"])
                    except OSError:
                        pass

        t = threading.Thread(target=flapper)
        t.start()
        try:
            acked, attempted, refused = keep_uploading(d, "flapping", 60, r, largest=UPLOAD_LARGEST)
        finally:
            flapping.set()
            t.join()
        d.wait_connected(len(TWELVE))
        shown = check_nothing_half_visible(d, attempted, acked, "flapping nodes")
        check(not refused, f"uploads failed with one agent killed at a time: {refusals(refused)}: "
                           f"{refused[0][2] if refused else ''}")
        healed = wait_redundant(d)
        everything = {**base_acked, **acked}
        everything.update({k: v for k, v in attempted.items() if k in d.files()})
        for n in r.sample(d.connected(), 3):
            os.kill(n["agent_pid"], 9)
        _, _, bad = read_all(d, everything)
        check(not bad, f"after flapping, with three nodes down: {bad[:3]}")
        messages = sorted({m[:120] for _, _, m in refused})[:2]
        figures += [
            ("flapping", f"{len(kills)} agents killed in 60 s ({', '.join(kills)}): "
                         f"{len(acked)} uploads acknowledged, "
                         f"{len(acked) / 60 / healthy_rate:.2f} of the healthy rate; "
                         f"{shown - len(acked)} more stored unanswered; refused: "
                         f"{refusals(refused)}"),
            ("refusals said", "; ".join(messages) or "-"),
            ("afterwards", f"fully redundant {healed:.0f} s after the nodes settled; "
                           f"{len(everything)} files bit-exact with three nodes down"),
        ]
        rates = dict(healthy=healthy_rate, frozen=frozen_rate / healthy_rate,
                     flapping=len(acked) / 60 / healthy_rate, kills=len(kills))
    finally:
        d.kill()
    return figures, rates


SCENARIOS = {
    **CORRECTNESS,
    "agents-killed": agents_killed,
    "corruption": corruption,
    "daemon-killed": daemon_killed,
    "reclaimed": reclaimed,
    "node-trouble": node_trouble,
    "bad-input": bad_input,
    "security": security,
    "load": load,
    "fuzz": fuzz,
}
