"""What every fault scenario needs: a real `cloudshell store serve
--emulated` daemon (nine regions, each a real agent process in its
environment's home), its HTTP API, the agents' processes and shard
directories, and deterministic file contents to check reads against.

Nothing here is mocked: the scenarios talk to the daemon over its sockets
and hurt the agents and the daemon the way the world would (SIGKILL,
SIGSTOP, wiped homes, flipped bits on disk).
"""

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

MIB = 1 << 20


class Failed(Exception):
    """A scenario's check did not hold."""


def check(cond, what):
    if not cond:
        raise Failed(what)


def wait_until(probe, timeout, why, every=0.5):
    """Waits until `probe()` returns something true and returns it with the
    seconds waited; fails with `why(last)` (the last value probed) after
    `timeout` seconds. Scenarios wait on what they need to see, never for
    a fixed time."""
    started = time.monotonic()
    while True:
        last = probe()
        if last:
            return last, time.monotonic() - started
        check(time.monotonic() - started < timeout, why(last))
        time.sleep(every)


def content(seed, size):
    """Deterministic bytes for (seed, size), made in 1 MiB blocks."""
    out = bytearray()
    block = hashlib.shake_256(f"block-{seed}".encode()).digest(MIB)
    i = 0
    while len(out) < size:
        # Each block differs (rotated), so no two chunks of a file match.
        r = (i * 7919) % MIB
        out += block[r:] + block[:r]
        i += 1
    return bytes(out[:size])


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def kill_under(root, sig=signal.SIGKILL):
    """Signals every process whose working directory is under root (the
    agents run detached in their homes and outlive the daemon)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(root):
            try:
                os.kill(int(pid), sig)
            except OSError:
                pass


class Emulator:
    """`cloudshell emulator` on its own, for scenarios that act on the
    environments as AWS would (stop them, reclaim them) behind the
    daemon's back; the daemon then reaches it as it would reach AWS."""

    def __init__(self, cli, data, extra=(), env=None):
        self.cli = cli
        self.data = data
        self.proc = subprocess.Popen(
            [cli, "emulator", "--listen", "127.0.0.1:0", "--data-dir", data, *extra],
            stdout=subprocess.PIPE, stderr=open(data + ".log", "a"), text=True,
            env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        check(line, "the emulator exited before saying where it listens")
        info = json.loads(line)
        self.endpoint = info["endpoint"]
        self.regions = info["regions"]
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=info["access_key_id"],
                        AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
                        AWS_EC2_METADATA_DISABLED="true")
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            self.env.pop(k, None)

    def cloudshell(self, region, *args):
        """Runs a `cloudshell` control command against this emulator."""
        r = subprocess.run([self.cli, "--endpoint-url", self.endpoint, "--region", region,
                            "--output", "json", *args],
                           env=self.env, capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"cloudshell {' '.join(args)}: {r.stderr.strip()}")
        return json.loads(r.stdout) if r.stdout.strip() else None

    def home(self, environment_id):
        return os.path.join(self.data, "homes", environment_id)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Daemon:
    """`cloudshell store serve` on a data directory: on its own embedded
    emulator by default, or on `emulator` (an Emulator) as on AWS."""

    def __init__(self, cli, data, extra=(), env=None, emulator=None,
                 listen="127.0.0.1:0", s3_listen="127.0.0.1:0"):
        self.cli = cli
        self.listen = ["--listen", listen, "--s3-listen", s3_listen]
        self.data = data
        self.emulator = emulator
        if emulator:
            self.extra = ["--endpoint-url", emulator.endpoint,
                          "--regions", ",".join(emulator.regions[:9]), *extra]
            env = emulator.env
        else:
            self.extra = ["--emulated", *extra]
        self.env = dict(env or os.environ, AWS_EC2_METADATA_DISABLED="true")
        self.proc = None
        self.url = self.s3 = None
        self.log = []

    def start(self, timeout=300):
        self.proc = subprocess.Popen(
            [self.cli, "store", "serve", "--data-dir", self.data, *self.listen, *self.extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=self.env)
        started = time.monotonic()
        self.log = []
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"API at (http://[0-9.:]+)/api", line)
            self.url = m.group(1) if m else self.url
            m = re.search(r"S3 endpoint at (http://[0-9.:]+)", line)
            self.s3 = m.group(1) if m else self.s3
            if "ready:" in line:
                break
            if time.monotonic() - started > timeout:
                raise Failed("the daemon was not ready in time")
        else:
            raise Failed("the daemon exited: " + "".join(self.log[-5:]))
        # Keep draining its log so it never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return time.monotonic() - started

    def _drain(self):
        with open(self.data + ".log", "a") as f:
            f.writelines(self.log)
            for line in self.proc.stderr:
                self.log.append(line)
                del self.log[:-2000]
                f.write(line)
                f.flush()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=60):
        """Asks the daemon to stop (SIGTERM) and waits for it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)

    @property
    def pid(self):
        return self.proc.pid

    # --- HTTP ---------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=300):
        u = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(u.netloc, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None):
        status, data = self.request(method, path, body)
        check(200 <= status < 300, f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def put(self, name, data):
        return self.request("PUT", "/api/files/" + urllib.parse.quote(name), body=data)

    def get(self, name):
        return self.request("GET", "/api/files/" + urllib.parse.quote(name))

    def files(self):
        return {f["name"]: f for f in self.json("GET", "/api/files")["files"]}

    def nodes(self):
        return self.json("GET", "/api/nodes")["nodes"]

    def connected(self):
        return [n for n in self.nodes() if n["state"] == "connected"]

    def wait_connected(self, n=9, timeout=180):
        _, waited = wait_until(
            lambda: len(self.connected()) >= n, timeout,
            lambda _: f"{n} nodes not connected within {timeout} s: "
            + ", ".join(f"{x['region']}={x['state']}" for x in self.nodes()))
        return waited

    def wait_restarted(self, victims, timeout=300):
        """Waits until every node in `victims` (as /api/nodes gave them) is
        connected to a new agent process, then for all nine."""
        started = time.monotonic()
        old = {v["id"]: v["agent_pid"] for v in victims}
        while True:
            now = {n["id"]: n for n in self.nodes()}
            if all(now[i]["state"] == "connected" and now[i]["agent_pid"] != pid
                   for i, pid in old.items()):
                break
            check(time.monotonic() - started < timeout,
                  f"agents not restarted within {timeout} s: "
                  + ", ".join(f"{i}={now[i]['state']}" for i in old))
            time.sleep(0.5)
        self.wait_connected(9, timeout)
        return time.monotonic() - started

    def scrub(self, timeout=900):
        """Runs a scrub now and returns its report."""
        before = self.json("GET", "/api/scrub").get("last_finished")
        self.json("POST", "/api/scrub")

        def finished():
            s = self.json("GET", "/api/scrub")
            return s if not s["running"] and s.get("last_finished") not in (None, before) else None
        s, _ = wait_until(finished, timeout, lambda _: "the scrub did not finish")
        return s

    # --- the nodes' disks ----------------------------------------------

    def homes(self):
        if self.emulator:
            return os.path.join(self.emulator.data, "homes")
        return os.path.join(self.data, "emulator", "homes")

    def shard_counts(self):
        """(shard files on the nodes' disks, shards the index names)."""
        in_index = sum(f["chunks"] * (f["k"] + f["m"]) for f in self.files().values())
        return len(self.shard_files()), in_index

    def shard_files(self):
        """(path, file id hex, chunk, index) of every file shard on disk."""
        out = []
        root = self.homes()
        for home in os.listdir(root):
            shards = os.path.join(root, home, ".cloudshell-agent", "shards")
            if not os.path.isdir(shards):
                continue
            for d in os.listdir(shards):
                for name in os.listdir(os.path.join(shards, d)):
                    parts = name.split("-")
                    if len(parts) != 3 or parts[0] == b"cloudshell-index".hex():
                        continue
                    out.append((os.path.join(shards, d, name), parts[0],
                                int(parts[1], 16), int(parts[2], 16)))
        return out


class Workdir:
    """A temporary directory whose agents are killed when it goes."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="faults-")
        return self.path

    def __exit__(self, *exc):
        kill_under(self.path)
        if os.environ.get("FAULTS_KEEP_LOGS"):
            for name in os.listdir(self.path):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(self.path, name), os.environ["FAULTS_KEEP_LOGS"])
        shutil.rmtree(self.path, ignore_errors=True)


def mixed_sizes(count, total_min, largest, rng):
    """`count` sizes from 0 to `largest` adding up to at least `total_min`:
    mostly small files, some large, the edges of chunks among them."""
    edges = [0, 1, 4095, 4096, MIB - 1, MIB, MIB + 1, largest]
    sizes = edges + [int(rng.paretovariate(1.2) * 40_000) % (4 * MIB)
                     for _ in range(count - len(edges))]
    i = len(edges)
    while sum(sizes) < total_min:
        sizes[i] = rng.randrange(16 * MIB, largest + 1)
        i += 1
    return sizes


def rng(seed):
    return random.Random(seed)
