#!/usr/bin/env python3
"""Tahoe-LAFS peer for the loopback benchmarks.

Runs a complete, private Tahoe-LAFS grid on 127.0.0.1 (one introducer, N
storage nodes, one storage-less client node) as child processes, and talks to
the client's web API (the "WAPI") with plain ``http.client``.

This module uses the Python 3.11 standard library only.  Tahoe itself lives in
its own virtualenv, created on demand by :func:`ensure_venv`.

Smoke run::

    python3 -m bench.peers.tahoe [--venv DIR] [--size-mib N] [--files N]

Library use::

    from bench.peers import tahoe
    exe = tahoe.ensure_venv("/root/.cache/cloudshell-bench/tahoe-venv")
    with tahoe.Grid(exe, "/tmp/grid") as g:
        cap = g.put_file("big.bin")
        g.get_file(cap, "big.out")
        print(g.client_pid, g.storage_pids, g.introducer_pid, g.web_url)

Notes on the Tahoe version (1.20.0, the newest on PyPI at the time of
writing, installs cleanly on CPython 3.11):

* ``tahoe run`` does not daemonize any more and *exits when its stdin is
  closed* (unless ``--allow-stdin-close``).  We give every node a stdin pipe
  and keep it open; this is also a safety net: if the benchmark process dies,
  the pipes close and the nodes exit by themselves.  The PID of the
  ``Popen`` is the node's PID (the ``tahoe`` console script is the Python
  process running the reactor; there is no wrapper process).
* Since 1.19 storage servers announce both Foolscap and HTTPS ("GBS")
  endpoints on the same port, and clients prefer HTTPS.  We keep that default
  (``force_foolscap=False``); pass ``force_foolscap=True`` to measure the old
  protocol.
* The welcome page JSON (``GET /?t=json``) has
  ``{"introducers": {"statuses": [...]}, "servers": [{"nodeid", "nickname",
  "connection_status": "connected" | ..., ...}]}``; we wait until every
  storage node appears there with ``connection_status == "connected"``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

# tahoe-lafs 1.20.0 is the newest release and installs on Python 3.11 as is.
# It is pinned so that benchmark figures stay comparable across machines.
TAHOE_REQUIREMENT = "tahoe-lafs==1.20.0"

_CHUNK = 1 << 20  # streaming block size for uploads/downloads


# --------------------------------------------------------------------------
# virtualenv
# --------------------------------------------------------------------------

def ensure_venv(path: str, requirement: str = TAHOE_REQUIREMENT) -> str:
    """Make sure a virtualenv with Tahoe-LAFS exists at ``path``.

    Creates it with ``python3 -m venv`` and ``pip install``s Tahoe if
    ``path/bin/tahoe`` is missing.  Idempotent.  Returns the path of the
    ``tahoe`` executable.
    """
    path = os.path.abspath(os.path.expanduser(path))
    exe = os.path.join(path, "bin", "tahoe")
    if os.access(exe, os.X_OK):
        return exe
    py = os.path.join(path, "bin", "python3")
    if not os.access(py, os.X_OK):
        # Use the running interpreter (3.11) rather than whatever "python3"
        # on PATH happens to be.
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         requirement],
        check=True,
    )
    if not os.access(exe, os.X_OK):
        raise RuntimeError(f"pip installed {requirement} but {exe} is missing")
    return exe


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _reserve_ports(n: int) -> list[int]:
    """Return ``n`` distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen, so the ports are
    distinct; they are released just before the nodes start (a small race
    with unrelated processes remains; start-up reports it clearly).
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: str, n: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = [ln for ln in
                     f.read().decode("utf-8", "replace").splitlines()
                     if "GET /?t=json" not in ln]
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM, KiB) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class TahoeError(RuntimeError):
    pass


class _Node:
    def __init__(self, name: str, basedir: str):
        self.name = name
        self.basedir = basedir
        self.logfile = basedir + ".log"  # beside the node dir: stdout+stderr
        self.proc: subprocess.Popen | None = None
        self._log_fh = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, exe: str) -> None:
        self._log_fh = open(self.logfile, "ab")
        # stdin=PIPE, kept open: "tahoe run" exits when stdin closes.
        # start_new_session: a Ctrl-C on the terminal reaches only us; we
        # then stop the nodes in order from __exit__.
        self.proc = subprocess.Popen(
            [exe, "run", self.basedir],
            stdin=subprocess.PIPE,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise TahoeError(
                f"tahoe node {self.name!r} exited with code "
                f"{self.proc.returncode} during start-up; tail of "
                f"{self.logfile}:\n{_tail(self.logfile)}")

    def signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # own session => own group
        except ProcessLookupError:
            pass
        except PermissionError:
            self.proc.send_signal(sig)

    def finish(self) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None


# --------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------

class Grid:
    """A private Tahoe-LAFS grid on loopback, as a context manager.

    ``Grid(tahoe_exe, workdir, storage_nodes=9, needed=6, happy=None,
    total=9)``.

    ``happy`` defaults to ``min(total, storage_nodes)`` (9 with the
    defaults).  Servers-of-happiness ``h`` means the upload only succeeds if
    the shares can be matched to ``h`` *distinct* servers; with
    ``happy == total == storage_nodes`` the only acceptable placement is
    exactly one share on each storage node, which is the layout we want to
    compare with our own store (and an upload fails loudly instead of
    silently doubling shares up if a node is missing).  With happy=7 Tahoe
    would normally still spread 9 shares over 9 servers, but is allowed to
    put two shares on one server.
    """

    def __init__(self, tahoe_exe: str, workdir: str, storage_nodes: int = 9,
                 needed: int = 6, happy: int | None = None, total: int = 9,
                 *, start_timeout: float = 120.0, force_foolscap: bool = False,
                 reserved_space: str = "1G", io_timeout: float = 600.0):
        if happy is None:
            happy = min(total, storage_nodes)
        if not (1 <= needed <= happy <= total):
            raise ValueError(f"need 1 <= needed({needed}) <= happy({happy}) "
                             f"<= total({total})")
        if happy > storage_nodes:
            raise ValueError(f"happy={happy} can never be met with "
                             f"{storage_nodes} storage nodes")
        self.exe = os.path.abspath(tahoe_exe)
        self.workdir = os.path.abspath(workdir)
        self.n_storage = storage_nodes
        self.needed, self.happy, self.total = needed, happy, total
        self.start_timeout = start_timeout
        self.force_foolscap = force_foolscap
        self.reserved_space = reserved_space
        self.io_timeout = io_timeout

        self.introducer: _Node | None = None
        self.storage: list[_Node] = []
        self.client: _Node | None = None
        self.web_port: int | None = None
        self.web_url: str | None = None
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()

    # ---- pids ------------------------------------------------------------

    @property
    def client_pid(self) -> int:
        return self.client.pid

    @property
    def storage_pids(self) -> list[int]:
        return [n.pid for n in self.storage]

    @property
    def introducer_pid(self) -> int:
        return self.introducer.pid

    def all_nodes(self) -> list[_Node]:
        nodes = [self.introducer, *self.storage, self.client]
        return [n for n in nodes if n is not None]

    # ---- lifecycle -------------------------------------------------------

    def __enter__(self) -> "Grid":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _tahoe(self, *args: str) -> None:
        r = subprocess.run([self.exe, *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        if r.returncode != 0:
            raise TahoeError(f"`tahoe {' '.join(args)}` failed "
                             f"(rc={r.returncode}):\n"
                             f"{r.stdout.decode('utf-8', 'replace')}")

    def _append_cfg(self, basedir: str, text: str) -> None:
        with open(os.path.join(basedir, "tahoe.cfg"), "a") as f:
            f.write(text)

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        deadline = time.monotonic() + self.start_timeout
        # ports: introducer tub, storage tubs, client web API
        ports = _reserve_ports(2 + self.n_storage)
        intro_port, web_port, storage_ports = ports[0], ports[1], ports[2:]

        # No [tor]/[i2p] sections; connections explicitly plain TCP only.
        no_anon = "\n[connections]\ntcp = tcp\n"

        # -- introducer
        idir = os.path.join(self.workdir, "introducer")
        self._tahoe("create-introducer",
                    f"--port=tcp:{intro_port}:interface=127.0.0.1",
                    f"--location=tcp:127.0.0.1:{intro_port}", idir)
        self._append_cfg(idir, no_anon)
        self.introducer = _Node("introducer", idir)
        self.introducer.start(self.exe)
        furl_path = os.path.join(idir, "private", "introducer.furl")
        while not os.path.exists(furl_path) or \
                os.path.getsize(furl_path) == 0:
            self.introducer.check_alive()
            self._check_deadline(deadline, "the introducer to write "
                                 "private/introducer.furl", self.introducer)
            time.sleep(0.1)
        time.sleep(0.05)  # let the write finish
        with open(furl_path) as f:
            furl = f.read().strip()

        # -- create storage and client node dirs (in parallel: each
        # `tahoe create-node` is ~1 s of Python start-up)
        common = ["create-node", f"--introducer={furl}",
                  f"--shares-needed={self.needed}",
                  f"--shares-happy={self.happy}",
                  f"--shares-total={self.total}"]
        jobs = []
        for i, port in enumerate(storage_ports):
            d = os.path.join(self.workdir, f"storage{i}")
            jobs.append([*common, f"--nickname=storage{i}",
                         f"--port=tcp:{port}:interface=127.0.0.1",
                         f"--location=tcp:127.0.0.1:{port}",
                         "--webport=none", d])
        cdir = os.path.join(self.workdir, "client")
        # The client does not listen on a Foolscap port at all (it only
        # makes outgoing connections) and stores nothing.
        jobs.append([*common, "--nickname=client", "--listen=none",
                     "--no-storage",
                     f"--webport=tcp:{web_port}:interface=127.0.0.1", cdir])
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
            for fut in [ex.submit(self._tahoe, *j) for j in jobs]:
                fut.result()

        ff = "true" if self.force_foolscap else "false"
        for i in range(self.n_storage):
            d = os.path.join(self.workdir, f"storage{i}")
            self._set_storage_cfg(d, enabled=True)
            self._append_cfg(d, no_anon)
        self._set_storage_cfg(cdir, enabled=False)
        self._append_cfg(cdir, no_anon)
        if self.force_foolscap:
            self._set_option(cdir, "client", "force_foolscap", ff)
            for i in range(self.n_storage):
                self._set_option(os.path.join(self.workdir, f"storage{i}"),
                                 "storage", "force_foolscap", ff)

        # -- start storage nodes and the client
        for i in range(self.n_storage):
            n = _Node(f"storage{i}", os.path.join(self.workdir, f"storage{i}"))
            self.storage.append(n)
            n.start(self.exe)
        self.client = _Node("client", cdir)
        self.client.start(self.exe)
        self.web_port = web_port
        self.web_url = f"http://127.0.0.1:{web_port}/"

        # -- wait for the client to see every storage node connected
        self._wait_connected(deadline)

    def _set_storage_cfg(self, basedir: str, enabled: bool) -> None:
        self._set_option(basedir, "storage", "enabled",
                         "true" if enabled else "false")
        self._set_option(basedir, "storage", "reserved_space",
                         self.reserved_space)

    @staticmethod
    def _set_option(basedir: str, section: str, key: str, value: str) -> None:
        """Set ``key = value`` in ``[section]`` of tahoe.cfg, textually (keeps
        the comments `tahoe create-node` wrote)."""
        path = os.path.join(basedir, "tahoe.cfg")
        with open(path) as f:
            lines = f.read().splitlines()
        out, cur, done = [], None, False
        for line in lines:
            s = line.strip()
            if s.startswith("[") and s.endswith("]"):
                if cur == section and not done:
                    out.append(f"{key} = {value}")
                    done = True
                cur = s[1:-1].strip()
            elif cur == section and not s.startswith(("#", ";")) and "=" in s \
                    and s.split("=", 1)[0].strip() == key:
                if not done:
                    out.append(f"{key} = {value}")
                    done = True
                continue
            out.append(line)
        if not done:
            if cur != section:
                out.append(f"[{section}]")
            out.append(f"{key} = {value}")
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")

    def _check_deadline(self, deadline: float, what: str,
                        node: _Node | None = None, extra: str = "",
                        nodes: list[_Node] | None = None) -> None:
        if time.monotonic() < deadline:
            return
        msg = f"timed out after {self.start_timeout:.0f}s waiting for {what}"
        if extra:
            msg += f"\n{extra}"
        if nodes is None:
            nodes = [node] if node else self.all_nodes()
        for n in nodes:
            msg += f"\n--- tail of {n.logfile}:\n{_tail(n.logfile, 12)}"
        raise TahoeError(msg)

    def welcome(self, timeout: float = 10.0) -> dict:
        """The client's welcome page as JSON (``GET /?t=json``)."""
        c = http.client.HTTPConnection("127.0.0.1", self.web_port,
                                       timeout=timeout)
        try:
            c.request("GET", "/?t=json")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise TahoeError(f"GET /?t=json: {r.status} {r.reason}")
            return json.loads(body)
        finally:
            c.close()

    def _wait_connected(self, deadline: float) -> None:
        last = "web API not up yet"
        up_names: set[str] = set()
        while True:
            for n in self.all_nodes():
                n.check_alive()
            try:
                w = self.welcome(timeout=5.0)
                servers = w.get("servers", [])
                # HTTPS storage servers report "connected"; Foolscap ones
                # "Connected to tcp:127.0.0.1:PORT via tcp".  Anything else
                # ("Trying to connect", "Reconnecting in ...", "failure: ...",
                # "unstarted") is not up yet.
                up_names = {s.get("nickname") for s in servers
                            if str(s.get("connection_status", "")).lower()
                            .startswith("connected")}
                intro = w.get("introducers", {}).get("statuses", [])
                last = (f"{len(up_names)}/{self.n_storage} storage servers "
                        f"connected; introducer: {intro}; servers: "
                        + ", ".join(f"{s.get('nickname')}="
                                    f"{s.get('connection_status')}"
                                    for s in servers))
                if all(n.name in up_names for n in self.storage):
                    return
            except (OSError, http.client.HTTPException, ValueError) as e:
                last = f"web API at {self.web_url}: {e!r}"
            suspects = [self.client] + [n for n in self.storage
                                        if n.name not in up_names]
            self._check_deadline(
                deadline, "the client to connect to all storage nodes",
                nodes=suspects, extra=f"last status: {last}")
            time.sleep(0.25)

    def stop(self, term_timeout: float = 5.0) -> None:
        """SIGTERM every node, SIGKILL whatever is left after
        ``term_timeout`` seconds, reap them all."""
        with self._conns_lock:
            for c in self._conns:
                try:
                    c.close()
                except Exception:
                    pass
            self._conns.clear()
        self._local = threading.local()
        nodes = self.all_nodes()
        # client first, so it does not log lost connections needlessly
        for n in reversed(nodes):
            n.signal(signal.SIGTERM)
        end = time.monotonic() + term_timeout
        for n in nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.signal(signal.SIGKILL)
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            n.finish()

    # ---- HTTP ------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.web_port,
                                           timeout=self.io_timeout,
                                           blocksize=_CHUNK)
            self._local.conn = c
            with self._conns_lock:
                self._conns.append(c)
        return c

    def _drop_conn(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            with self._conns_lock:
                if c in self._conns:
                    self._conns.remove(c)
            self._local.conn = None

    def _request(self, method: str, url: str, body=None, headers=None,
                 rewind=None) -> http.client.HTTPResponse:
        """Send a request on this thread's persistent connection, retrying
        once on a fresh connection if the kept-alive one was closed by the
        server.  ``rewind`` is called before the retry (to seek a file
        body back to 0).  The caller must read the response fully."""
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, url, body=body, headers=headers or {})
                return c.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError, http.client.CannotSendRequest,
                    http.client.ResponseNotReady):
                self._drop_conn()
                if attempt:
                    raise
                if rewind:
                    rewind()
        raise AssertionError("unreachable")

    @staticmethod
    def _cap_path(cap: str) -> str:
        return "/uri/" + urllib.parse.quote(cap.strip(), safe=":")

    def _check(self, r: http.client.HTTPResponse, what: str,
               ok=(200, 201)) -> None:
        if r.status not in ok:
            body = r.read()[:2000].decode("utf-8", "replace")
            if r.will_close:
                self._drop_conn()
            raise TahoeError(f"{what}: HTTP {r.status} {r.reason}: {body}")

    def put_file(self, path: str) -> str:
        """Upload a file as an immutable (CHK) file; returns its read cap.

        The body is streamed from disk in 1 MiB blocks."""
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            r = self._request(
                "PUT", "/uri", body=f,
                headers={"Content-Length": str(size),
                         "Content-Type": "application/octet-stream"},
                rewind=lambda: f.seek(0))
            self._check(r, f"PUT /uri ({path})")
            cap = r.read().decode("ascii").strip()
        return cap

    def get_file(self, cap: str, out_path: str) -> int:
        """Download ``cap`` streaming into ``out_path``; returns bytes
        written."""
        r = self._request("GET", self._cap_path(cap))
        self._check(r, f"GET {cap}")
        n = 0
        with open(out_path, "wb") as f:
            while True:
                b = r.read(_CHUNK)
                if not b:
                    break
                f.write(b)
                n += len(b)
        return n

    def put_bytes(self, data: bytes) -> str:
        """Upload a small immutable file from memory; returns the read cap.
        (Files of <= 55 bytes become literal ``URI:LIT:`` caps and touch no
        server.)"""
        r = self._request("PUT", "/uri", body=data,
                          headers={"Content-Type": "application/octet-stream"})
        self._check(r, "PUT /uri")
        return r.read().decode("ascii").strip()

    def get_bytes(self, cap: str) -> bytes:
        r = self._request("GET", self._cap_path(cap))
        self._check(r, f"GET {cap}")
        return r.read()

    # ---- measurements ----------------------------------------------------

    def peak_rss_kib(self) -> dict:
        """VmHWM (KiB) of the client, the sum over storage nodes, and the
        introducer."""
        st = [vm_hwm_kib(p) or 0 for p in self.storage_pids]
        return {"client": vm_hwm_kib(self.client_pid) or 0,
                "storage_sum": sum(st),
                "storage_max": max(st) if st else 0,
                "introducer": vm_hwm_kib(self.introducer_pid) or 0}


# --------------------------------------------------------------------------
# smoke run
# --------------------------------------------------------------------------

DEFAULT_VENV = "/root/.cache/cloudshell-bench/tahoe-venv"


def _write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * _CHUNK)
            f.write(os.urandom(n))
            left -= n


def _same_file(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(4 * _CHUNK), fb.read(4 * _CHUNK)
            if x != y:
                return False
            if not x:
                return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default=DEFAULT_VENV)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--storage-nodes", type=int, default=9)
    ap.add_argument("--force-foolscap", action="store_true",
                    help="use the Foolscap storage protocol instead of "
                         "Tahoe's default HTTPS one")
    ap.add_argument("--workdir", default=None,
                    help="keep the grid here (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    t_all = time.monotonic()
    exe = ensure_venv(args.venv)
    ver = subprocess.run([exe, "--version"], capture_output=True,
                         text=True).stdout.strip()
    print(f"tahoe: {exe} ({ver})", flush=True)
    tmp = args.workdir or tempfile.mkdtemp(prefix="tahoe-bench-")
    try:
        t0 = time.monotonic()
        with Grid(exe, os.path.join(tmp, "grid"),
                  storage_nodes=args.storage_nodes,
                  force_foolscap=args.force_foolscap) as g:
            print(f"grid up in {time.monotonic() - t0:.1f}s: web {g.web_url} "
                  f"client pid {g.client_pid}, storage pids {g.storage_pids}, "
                  f"introducer pid {g.introducer_pid}; "
                  f"k={g.needed} happy={g.happy} n={g.total}, storage "
                  f"protocol {'foolscap' if g.force_foolscap else 'https'}",
                  flush=True)

            size = args.size_mib << 20
            src = os.path.join(tmp, "big.in")
            dst = os.path.join(tmp, "big.out")
            _write_random(src, size)
            t0 = time.monotonic()
            cap = g.put_file(src)
            t_up = time.monotonic() - t0
            print(f"big put: {args.size_mib} MiB in {t_up:.2f}s = "
                  f"{size / t_up / 1e6:.1f} MB/s  ({cap[:40]}...)",
                  flush=True)
            t0 = time.monotonic()
            g.get_file(cap, dst)
            t_down = time.monotonic() - t0
            print(f"big get: {args.size_mib} MiB in {t_down:.2f}s = "
                  f"{size / t_down / 1e6:.1f} MB/s", flush=True)
            if not _same_file(src, dst):
                raise SystemExit("FAIL: downloaded file differs")
            os.unlink(src)
            os.unlink(dst)
            print("big file: bytes match", flush=True)

            blobs = [os.urandom(args.file_size) for _ in range(args.files)]
            with concurrent.futures.ThreadPoolExecutor(args.threads) as ex:
                t0 = time.monotonic()
                caps = list(ex.map(g.put_bytes, blobs))
                t_sup = time.monotonic() - t0
                print(f"small put: {args.files} x {args.file_size} B in "
                      f"{t_sup:.2f}s = {args.files / t_sup:.1f} files/s "
                      f"({args.threads} threads)", flush=True)
                t0 = time.monotonic()
                got = list(ex.map(g.get_bytes, caps))
                t_sget = time.monotonic() - t0
                print(f"small get: {args.files} x {args.file_size} B in "
                      f"{t_sget:.2f}s = {args.files / t_sget:.1f} files/s",
                      flush=True)
            bad = sum(1 for a, b in zip(blobs, got) if a != b)
            if bad:
                raise SystemExit(f"FAIL: {bad} small files differ")
            print("small files: bytes match", flush=True)

            rss = g.peak_rss_kib()
            print(f"peak RSS (VmHWM): client {rss['client'] / 1024:.0f} MiB, "
                  f"storage sum {rss['storage_sum'] / 1024:.0f} MiB "
                  f"(max node {rss['storage_max'] / 1024:.0f} MiB), "
                  f"introducer {rss['introducer'] / 1024:.0f} MiB",
                  flush=True)
            pids = [g.client_pid, g.introducer_pid, *g.storage_pids]
        left = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if left:
            raise SystemExit(f"FAIL: processes left behind: {left}")
        print(f"all nodes stopped; total {time.monotonic() - t_all:.1f}s",
              flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
