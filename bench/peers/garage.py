"""Garage peer for the S3 benchmarks: a private three-node Garage cluster
on 127.0.0.1 (replication factor 3, its default consistency), each node a
child process with its own metadata and data directories, one bucket and
one key, reached through its S3 API.

Garage is built from crates.io with `cargo install garage --locked` into
~/.cache/cloudshell-bench/garage (about eight minutes on two cores, once):
:func:`ensure_binary` does it. Nothing of Garage is in this repository.

Library use::

    from bench.peers import garage
    exe = garage.ensure_binary("/root/.cache/cloudshell-bench")
    with garage.Cluster(exe, "/tmp/garage") as g:
        print(g.endpoint, g.region, g.key_id, g.secret, g.pids)
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time

NODES = 3
# What `cargo install garage --locked` built when these figures were taken.
VERSION = "2.5.0"
BUCKET = "bench"


def ensure_binary(cache):
    """The garage binary, installed from crates.io if it is not yet."""
    root = os.path.join(cache, "garage")
    exe = os.path.join(root, "bin", "garage")
    if not os.access(exe, os.X_OK):
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(cache, "garage-target"))
        subprocess.run(["cargo", "install", "garage", "--locked", "--version", VERSION,
                        "--root", root],
                       check=True, env=env)
    return exe


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Three Garage nodes on loopback, one layout, a bucket and a key."""

    region = "garage"

    def __init__(self, exe, work, nodes=NODES):
        self.exe = exe
        self.work = work
        self.n = nodes
        self.procs = []
        self.configs = []
        self.endpoint = None
        self.key_id = self.secret = None

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def _garage(self, i, *args):
        out = subprocess.run([self.exe, "-c", self.configs[i], *args], capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)}: {out.stderr.strip()[-500:]}")
        return out.stdout

    def __enter__(self):
        os.makedirs(self.work, exist_ok=True)
        rpc_secret = secrets.token_hex(32)
        s3_ports = []
        for i in range(self.n):
            d = os.path.join(self.work, f"node{i}")
            os.makedirs(d, exist_ok=True)
            rpc, s3, admin = _free_port(), _free_port(), _free_port()
            s3_ports.append(s3)
            path = os.path.join(d, "garage.toml")
            with open(path, "w") as f:
                f.write(f'''metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = 3
rpc_secret = "{rpc_secret}"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"

[s3_api]
s3_region = "{self.region}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
''')
            self.configs.append(path)
            log = open(os.path.join(d, "log"), "w")
            self.procs.append(subprocess.Popen(
                [self.exe, "-c", path, "server"], stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, RUST_LOG="warn")))
        ids = [self._wait(lambda i=i: self._garage(i, "node", "id", "-q").strip())
               for i in range(self.n)]
        for peer in ids[1:]:
            self._garage(0, "node", "connect", peer)
        for node_id in ids:
            self._garage(0, "layout", "assign", "-z", "dc1", "-c", "10G", node_id.split("@")[0])
        self._garage(0, "layout", "apply", "--version", "1")
        self._wait(lambda: self._garage(0, "bucket", "create", BUCKET))
        key = self._garage(0, "key", "create", "bench-key")
        self.key_id = re.search(r"Key ID:\s*(\S+)", key).group(1)
        self.secret = re.search(r"Secret key:\s*(\S+)", key).group(1)
        self._garage(0, "bucket", "allow", "--read", "--write", "--owner", BUCKET,
                     "--key", "bench-key")
        self.endpoint = f"http://127.0.0.1:{s3_ports[0]}"
        return self

    @staticmethod
    def _wait(fn, seconds=60):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return fn()
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
