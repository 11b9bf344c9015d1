"""Scenarios for the store's first duty: never a wrong byte, never a lost
acknowledged one, and health that tells the truth (issue 19).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

from .harness import MIB, Daemon, check, content, rng, sha256, wait_until

HERE = os.path.dirname(__file__)
LINEARIZABILITY = os.path.join(HERE, "..", "..", "tests", "python", "linearizability.py")


def s3_key(cli, d):
    r = subprocess.run([cli, "store", "--url", d.url, "--json", "keys", "create"],
                       capture_output=True, text=True, check=True)
    k = json.loads(r.stdout)["key"]
    return k["access_key_id"], k["secret_access_key"]


def race(cli, work, opts):
    """Writers, deleters and readers (a third of them slow, mid-stream while
    the name is overwritten or deleted) on four names through the JSON API
    and S3 at once, multipart objects among the writes; every answer is
    checked against the recorded history by
    `tests/python/linearizability.py`: every 200 body is one whole version
    with its own length and ETag, no read is stale or from the future, no
    acknowledged write is lost."""
    d = Daemon(cli, os.path.join(work, "race"))
    d.start()
    try:
        d.wait_connected(9)
        key, secret = s3_key(cli, d)
        seconds = 30 if opts.quick else opts.race_seconds
        history = os.path.join(work, "history.jsonl")
        r = subprocess.run(
            [sys.executable, LINEARIZABILITY, d.url, d.s3, key, secret,
             "--seconds", str(seconds), "--out", history, "--seed", str(opts.seed)],
            capture_output=True, text=True, env=dict(os.environ, AWS_EC2_METADATA_DISABLED="true"))
        summary = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
        check(r.returncode == 0, f"violations: {r.stderr.strip()[-2000:]}")
        figures = [
            ("run", f"{seconds:.0f} s, 11 client processes"),
            ("operations", f"{summary['ops']:,}: {summary['puts']:,} puts and"
                           f" {summary['deletes']:,} deletes acknowledged,"
                           f" {summary['gets']:,} gets"),
            ("gets", f"{summary['gets_200']:,} x 200, {summary['gets_404']:,} x 404;"
                     f" {summary['gets_s3']:,} through S3, {summary['gets_slow']:,} slow"),
            ("wrong or cut short", f"{summary['wrong']} wrong, {summary['truncated']} truncated,"
                                   f" {summary['read_errors']} read errors"),
            ("checker", f"{summary['violations']} violations of the register's history"),
        ]
        return figures
    finally:
        d.kill()


def wait_backup(d, after=None, timeout=60):
    """Waits until the index backup holds every change; returns its generation."""
    def backed_up():
        b = d.json("GET", "/api/health")["index_backup"]
        return b["generation"] if not b["pending"] and b["generation"] != after else None
    generation, _ = wait_until(
        backed_up, timeout,
        lambda _: f"no index backup in {timeout} s: {d.json('GET', '/api/health')['index_backup']}",
        every=0.3)
    return generation


def backup_files(d, generation):
    """{node home: (export shard path, manifest shard path)} of a generation."""
    gen_hex = f"{generation:016x}"
    man_hex = f"{generation | (1 << 62):016x}"
    out = {}
    root = d.homes()
    for home in sorted(os.listdir(root)):
        shards = os.path.join(root, home, ".cloudshell-agent", "shards")
        if not os.path.isdir(shards):
            continue
        export = manifest = None
        for sub in os.listdir(shards):
            for name in os.listdir(os.path.join(shards, sub)):
                parts = name.split("-")
                if parts[0] != b"cloudshell-index".hex():
                    continue
                if parts[1] == gen_hex:
                    export = os.path.join(shards, sub, name)
                elif parts[1] == man_hex:
                    manifest = os.path.join(shards, sub, name)
        if export:
            out[home] = (export, manifest)
    return out


def flip(path):
    with open(path, "r+b") as f:
        f.seek(-9, os.SEEK_END)
        b = f.read(1)
        f.seek(-9, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x40]))


def recover(cli, data, key, emulator):
    return subprocess.run(
        [cli, "store", "--json", "recover", "--emulated", "--data-dir", data,
         "--key-file", key, "--emulator-data-dir", emulator],
        capture_output=True, text=True, env=dict(os.environ, AWS_EC2_METADATA_DISABLED="true"))


def index_backup(cli, work, opts):
    """The index is lost (index.redb gone) and rebuilt from its backups on
    the nodes with the key alone, while the backup shards are damaged on the
    agents' disks: bit flips in three of the newest backup's nine shards;
    then in four (the backup before it is used, and the recovery says
    which it passed over and why); then in both backups past repair (a
    clear error, and the new data directory is left empty)."""
    r = rng(opts.seed + 19)
    data = os.path.join(work, "data")
    d = Daemon(cli, data)
    d.start()
    figures = []
    try:
        d.wait_connected(9)
        files = {}
        for i in range(40):
            body = content(1900 + i, r.randrange(0, 3 * MIB))
            status, _ = d.put(f"kept/{i:02d}", body)
            check(status == 201, f"put: {status}")
            files[f"kept/{i:02d}"] = sha256(body)
        older = wait_backup(d)
        status, _ = d.put("newer", b"only in the newest backup")
        check(status == 201, f"put: {status}")
        newest = wait_backup(d, after=older)
        held = backup_files(d, newest)
        check(len(held) == 9, f"the newest backup is on {len(held)} nodes, not 9")
        emulator = os.path.join(data, "emulator")
    finally:
        d.stop()
    key = os.path.join(work, "store.key")
    shutil.copy(os.path.join(data, "store.key"), key)
    os.chmod(key, 0o600)
    homes = sorted(held)

    def attempt(label):
        fresh = os.path.join(work, f"recovered-{label}")
        res = recover(cli, fresh, key, emulator)
        return fresh, res

    # Three damaged of nine: the newest still decodes.
    three = r.sample(homes, 3)
    for h in three:
        flip(held[h][0])
    fresh, res = attempt("three")
    check(res.returncode == 0, f"recovery with 3 damaged shards failed: {res.stderr[-800:]}")
    out = json.loads(res.stdout)
    check(out["generation"] == newest and not out["skipped"],
          f"used {out['generation']} (newest {newest}), passed over {out['skipped']}")
    check(out["files"] == 41, f"{out['files']} files recovered, not 41")
    figures.append(("3 of 9 shards flipped", f"newest backup used, {out['files']} files"))

    # Four: the one before is used, and the recovery says why.
    flip(held[next(h for h in homes if h not in three)][0])
    fresh, res = attempt("four")
    check(res.returncode == 0, f"recovery with 4 damaged shards failed: {res.stderr[-800:]}")
    out = json.loads(res.stdout)
    check(out["generation"] == older, f"used {out['generation']}, not the older {older}")
    check(len(out["skipped"]) == 1 and str(newest) in out["skipped"][0]
          and "check out" in out["skipped"][0], f"skipped: {out['skipped']}")
    check("passed over a newer index backup" in res.stderr, f"no warning: {res.stderr[-500:]}")
    check(out["files"] == 40, f"{out['files']} files recovered from the older backup, not 40")
    figures.append(("4 of 9 flipped", f"the backup before used, {out['files']} files; it said:"
                                      f" \"{out['skipped'][0][:200]}...\""))
    # Both damaged past repair: an error that says so, nothing written.
    older_held = backup_files(d, older)
    for h in homes[:4]:
        os.remove(older_held[h][0])
    fresh, res = attempt("none")
    check(res.returncode != 0, "recovered from backups damaged past repair")
    check(str(newest) in res.stderr and str(older) in res.stderr,
          f"the error does not name both backups: {res.stderr[-800:]}")
    check(not os.path.exists(os.path.join(fresh, "index.redb")), "an index was written")
    said = res.stderr.strip().splitlines()[-1]
    figures.append(("every backup damaged", f"refused: \"{said[:260]}...\"; no index written"))
    return figures


SCENARIOS = {
    "race": race,
    "index-backup": index_backup,
}


def shard_path(home, file_id, chunk, index):
    name = f"{file_id}-{chunk:016x}-{index:02x}"
    return os.path.join(home, ".cloudshell-agent", "shards", name[:2], name)


def health_lies(d, names, homes_by_node):
    """What the API says of each file's health that the nodes' disks deny:
    a file called healthy with a shard missing where its manifest puts it,
    or one that survives more losses than the shards on disk allow."""
    lies = []
    for name in names:
        status, body = d.request("GET", "/api/stat/" + urllib.parse.quote(name))
        if status == 404:
            continue
        check(status == 200, f"stat {name}: {status}")
        st = json.loads(body)
        fid, k = st["file"]["id"], st["file"]["k"]
        h = st["health"]
        worst = None
        for c in st["chunks"]:
            present = sum(
                1 for i, s in enumerate(c["shards"])
                if os.path.exists(shard_path(homes_by_node[s["node"]], fid, c["index"], i)))
            worst = present if worst is None else min(worst, present)
            if present < len(c["shards"]) and h["state"] == "healthy":
                lies.append(f"{name}: healthy, but chunk {c['index']} has {present} of"
                            f" {len(c['shards'])} shards on disk")
        if worst is not None and h["state"] != "unrecoverable" and h["survives"] > worst - k:
            lies.append(f"{name}: survives {h['survives']} losses, but a chunk has {worst}"
                        f" shards on disk (k = {k})")
    return lies


def orphans(d):
    """Shard files on the disks that no manifest names where they are."""
    named = set()
    for name in d.files():
        st = d.json("GET", "/api/stat/" + urllib.parse.quote(name))
        for c in st["chunks"]:
            for i, s in enumerate(c["shards"]):
                named.add((s["node"], st["file"]["id"], c["index"], i))
    by_env = {n["environment_id"]: n["id"] for n in d.nodes()}
    left = 0
    for path, fid, chunk, index in d.shard_files():
        env = path.split(os.sep)[-5]
        if (by_env.get(env), fid, chunk, index) not in named:
            left += 1
    return left


def interrupted_repair(cli, work, opts):
    """One shard of every chunk is deleted (through the API, so the daemon
    knows), a repair job starts, and three agents are SIGKILLed while it
    runs. Twice a second until the end, every file's health as the API
    reports it is held against the shards on the agents' disks: a file is
    never called healthy with a shard missing, nor said to survive more
    losses than its shards allow. Files the repair could not finish say so
    in words that fit a repair, show degraded, and are repaired again by
    themselves once the agents are back (no manual scrub); the attempt's
    stray shards are removed."""
    r = rng(opts.seed + 23)
    d = Daemon(cli, os.path.join(work, "repair"))
    d.start()
    figures = []
    try:
        d.wait_connected(9)
        count = 10 if opts.quick else 40
        expected = {}
        for i in range(count):
            body = content(2300 + i, r.randrange(MIB, 6 * MIB))
            name = f"rep/{i:02d}"
            status, _ = d.put(name, body)
            check(status == 201, f"put: {status}")
            expected[name] = sha256(body)
        homes = {n["id"]: os.path.join(d.homes(), n["environment_id"]) for n in d.nodes()}
        deleted = 0
        for name in expected:
            st = d.json("GET", "/api/stat/" + urllib.parse.quote(name))
            for c in st["chunks"]:
                i = c["index"] % len(c["shards"])
                node = c["shards"][i]["node"]
                d.json("DELETE", f"/api/shards/{node}/{urllib.parse.quote(name, safe='')}"
                                 f"/{c['index']}/{i}")
                deleted += 1
        lies = health_lies(d, expected, homes)
        check(not lies, f"before the repair: {lies[:3]}")
        job = d.json("POST", "/api/repair")
        started = time.monotonic()
        while d.json("GET", f"/api/jobs/{job['id']}")["done"] < 2:
            check(time.monotonic() - started < 120, "the repair job did not start")
            time.sleep(0.05)
        victims = r.sample(d.nodes(), 3)
        for v in victims:
            os.kill(v["agent_pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        polls, seen_degraded = 0, 0
        result = None
        while True:
            lies = health_lies(d, expected, homes)
            polls += 1
            check(not lies, f"health lied after {time.monotonic() - killed_at:.1f} s: {lies[:3]}")
            files = d.files()
            unhealthy = [n for n in expected if files[n]["health"]["state"] != "healthy"]
            seen_degraded = max(seen_degraded, len(unhealthy))
            if result is None:
                j = d.json("GET", f"/api/jobs/{job['id']}")
                if not j["running"]:
                    result = j
                    job_secs = time.monotonic() - started
            if result is not None and not unhealthy:
                break
            check(time.monotonic() - killed_at < 300,
                  f"{len(unhealthy)} files not healthy 300 s after the kill: {unhealthy[:5]}")
            time.sleep(0.5)
        healed = time.monotonic() - killed_at
        failed = result["result"]["failed"] if result.get("result") else []
        for f in failed:
            check("repair of" in f["error"] and "not stored" not in f["error"],
                  f"a failed repair reads like something else: {f['error']}")
        d.wait_connected(9)
        wait_until(lambda: orphans(d) == 0, 60,
                   lambda _: f"{orphans(d)} shard files nothing refers to", every=1)
        for name, digest in expected.items():
            status, body = d.get(name)
            check(status == 200 and sha256(body) == digest, f"{name} reads wrong")
        figures += [
            ("files", f"{count}, {deleted} shards deleted through the API (one per chunk)"),
            ("kill", "agents of " + ", ".join(v["region"] for v in victims)
             + f" SIGKILLed {killed_at - started:.1f} s into the repair job"),
            ("job", f"ended in {job_secs:.1f} s: {result['result']['shards_rebuilt']} shards"
                    f" rebuilt, {len(failed)} files unfinished"
                    + (f", e.g. \"{failed[0]['error'][:180]}\"" if failed else "")),
            ("health", f"{polls} polls of every file against the disks, 0 lies; at most"
                       f" {seen_degraded} files shown not healthy"),
            ("healed", f"every file healthy {healed:.0f} s after the kill, no scrub asked for;"
                       f" 0 stray shard files; all {count} files bit-exact"),
        ]
        return figures
    finally:
        d.kill()


SCENARIOS["interrupted-repair"] = interrupted_repair


def full_disk(cli, work, opts):
    """One node's shard directory is put on a 24 MiB filesystem and 4 MiB
    files are uploaded until long after it is full: once its disk is full
    the agent answers "full" (not an I/O error), the daemon shows the node
    full and places new chunks on the other eight, and every upload is
    accepted and reads back bit-exact. Then the store's own cap
    (`cloudshell store nodes --quota`) is set below their use on the other
    eight: with no node left with room the next upload is refused whole
    with 507 StoreFull naming the full nodes, and lifting the caps lets
    writes go on. (While some node has room for a chunk's shards, they
    double up there, as when nodes are away: the unit tests show the
    refusal when the room left is for fewer than nine.)"""
    r = rng(opts.seed + 29)
    d = Daemon(cli, os.path.join(work, "full"))
    d.start()
    mounted = None
    figures = []
    try:
        d.wait_connected(9)
        victim = r.choice(d.nodes())
        shards = os.path.join(d.homes(), victim["environment_id"], ".cloudshell-agent", "shards")
        os.kill(victim["agent_pid"], signal.SIGKILL)
        os.makedirs(shards, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", shards],
                             capture_output=True, text=True)
        check(res.returncode == 0, f"cannot mount a small filesystem (needs root): {res.stderr}")
        mounted = shards
        d.wait_restarted([victim])
        stored, last_on_full = {}, None
        count = 30 if opts.quick else 60
        for i in range(count):
            body = content(2900 + i, 4 * MIB)
            name = f"full/{i:02d}"
            status, resp = d.put(name, body)
            check(status == 201, f"upload {i} refused with one node full: {status} {resp[:300]!r}")
            stored[name] = sha256(body)
            st = d.json("GET", "/api/stat/" + urllib.parse.quote(name))
            if any(s["node"] == victim["id"] for c in st["chunks"] for s in c["shards"]):
                last_on_full = i + 1
        check(last_on_full is not None and last_on_full < count - 5,
              f"the node took shards until upload {last_on_full} of {count}")
        # Its status follows the agent's stats (every few seconds).
        def shown_full():
            node = next(n for n in d.nodes() if n["id"] == victim["id"])
            return node if node["full"] else None
        wait_until(shown_full, 20, lambda _: f"{victim['id']} is not shown full")
        listing = subprocess.run([cli, "store", "--url", d.url, "nodes"],
                                 capture_output=True, text=True).stdout
        row = next(line for line in listing.splitlines() if line.startswith(victim["id"]))
        check(" full " in row, f"`store nodes` does not say full: {row}")
        disk_used = sum(os.path.getsize(os.path.join(dp, f))
                        for dp, _, fs in os.walk(shards) for f in fs)
        for name, digest in stored.items():
            status, body = d.get(name)
            check(status == 200 and sha256(body) == digest, f"{name} reads wrong")
        # Caps on the other eight: no room left anywhere.
        capped = [n["id"] for n in d.nodes() if n["id"] != victim["id"]]
        args = [a for n in capped for a in ("--quota", f"{n}=1M")]
        res = subprocess.run([cli, "store", "--url", d.url, "nodes", *args],
                             capture_output=True, text=True)
        check(res.returncode == 0, f"store nodes --quota: {res.stderr}")
        # Small: a refusal comes before the body is read, and a client still
        # sending a large one sees the connection close first.
        status, resp = d.put("full/refused", content(3999, 4096))
        check(status == 507, f"with every node full or capped: {status} {resp[:300]!r}")
        err = json.loads(resp)["error"]
        check(status == 507 and err["code"] == "StoreFull", f"with caps: {status} {err}")
        check(all(n in err["message"] for n in capped + [victim["id"]]),
              f"the refusal does not name the full nodes: {err['message']}")
        check("full/refused" not in d.files(), "the refused upload is visible")
        args = [a for n in capped for a in ("--quota", f"{n}=none")]
        subprocess.run([cli, "store", "--url", d.url, "nodes", *args], check=True,
                       capture_output=True)
        status, _ = d.put("full/after", content(4000, 4 * MIB))
        check(status == 201, f"after lifting the caps: {status}")
        figures += [
            ("full node", f"{victim['id']}'s shards on a 24 MiB filesystem: its last shard"
                          f" came with upload {last_on_full} of 4 MiB ({disk_used / MIB:.1f} MiB"
                          f" on it), then it was shown full"),
            ("uploads", f"{count} of {count} accepted (0 refused), the last"
                        f" {count - last_on_full} with no shard on the full node; all read back"
                        f" bit-exact"),
            ("store nodes", row.strip()),
            ("caps", f"the other eight capped at 1 MiB: 507 StoreFull, \"{err['message'][:240]}\""),
            ("after", "caps lifted: the next upload stored"),
        ]
        return figures
    finally:
        d.kill()
        if mounted:
            kill_agents_in(mounted)
            subprocess.run(["umount", "-l", mounted], capture_output=True)


def kill_agents_in(shards):
    """Kills the agent whose home holds `shards`, so its filesystem can go."""
    home = os.path.dirname(os.path.dirname(shards))
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(home):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


SCENARIOS["full-disk"] = full_disk
