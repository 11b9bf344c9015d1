"""The security scenario: who may talk to the daemon, what a web page may
make it do, and where injected credentials must never show up."""

import os
import pty
import re
import select
import socket
import subprocess
import time
import urllib.parse

from .harness import Daemon, Emulator, check


def outward_ip():
    """An address of this machine other than loopback, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def http(url, method="GET", headers=None, body=None):
    import http.client
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body,
                     headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def exposure(cli, work, figures):
    r = subprocess.run([cli, "store", "serve", "--emulated", "--data-dir",
                        os.path.join(work, "open"), "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, AWS_EC2_METADATA_DISABLED="true"))
    check(r.returncode != 0 and "token" in r.stderr,
          f"listening on 0.0.0.0 without a token: {r.returncode} {r.stderr[-300:]}")
    refusal = r.stderr.strip().splitlines()[-1]
    ip = outward_ip()
    if ip is None:
        figures.append(("exposure", f"without a token, 0.0.0.0 is refused: \"{refusal[:150]}\"; "
                                    "this machine has no other address to test from"))
        return
    token = "s3cr3t-" + os.urandom(8).hex()
    d = Daemon(cli, os.path.join(work, "exposed"), extra=["--token", token],
               listen="0.0.0.0:0", s3_listen="0.0.0.0:0")
    d.start()
    try:
        port = urllib.parse.urlsplit(d.url).port
        s3_port = urllib.parse.urlsplit(d.s3).port
        api = f"http://{ip}:{port}"
        results = {}
        for what, path, headers in [
            ("no token", "/api/files", {}),
            ("wrong token", "/api/files", {"Authorization": "Bearer nope"}),
            ("metrics, no token", "/metrics", {}),
            ("loopback, no token", None, {}),
        ]:
            url = f"http://127.0.0.1:{port}/api/files" if path is None else api + path
            status, _ = http(url, headers=headers)
            results[what] = status
            check(status == 401, f"{what}: {status}")
        status, _ = http(api + "/api/files", headers={"Authorization": f"Bearer {token}"})
        check(status == 200, f"with the token: {status}")
        # The UI's page is its login form: static, no data; it asks for the
        # token and sends it with every API call.
        status, page = http(api + "/")
        check(status == 200 and b"token-dialog" in page, f"the UI page: {status}")
        status, body = http(f"http://{ip}:{s3_port}/")
        check(status == 403 and b"AccessDenied" in body, f"S3 without a key: {status} {body[:200]!r}")
    finally:
        d.kill()
    figures.append(("exposure", f"0.0.0.0 without a token refused at start (\"{refusal[:120]}\"); "
                                f"with one, from {ip}: the API and /metrics with no token or "
                                "a wrong one get 401, even from loopback, with the token 200 "
                                "(the UI page itself is static and asks for the token); S3 "
                                "without a key 403 AccessDenied"))


def cross_origin(cli, work, figures):
    d = Daemon(cli, os.path.join(work, "csrf"))
    d.start()
    try:
        refused = []
        for what, headers, body in [
            ("form POST from another site", {"Origin": "https://evil.example",
                                             "Content-Type": "application/x-www-form-urlencoded"},
             b"a=b"),
            ("fetch marked cross-site", {"Sec-Fetch-Site": "cross-site"}, b"{}"),
            ("DNS rebinding", {"Host": "rebind.example:80",
                               "Origin": "http://rebind.example:80"}, b"{}"),
        ]:
            for method, path in [("POST", "/api/repair"), ("DELETE", "/api/files/x"),
                                 ("POST", "/api/s3/keys")]:
                status, _ = d.request(method, path, body=body, headers=headers)
                check(status == 403, f"{what}, {method} {path}: {status}")
            refused.append(what)
        check(d.json("GET", "/api/s3/keys")["keys"] == [], "a refused request made a key")
        status, _ = d.request("GET", "/api/jobs/1")
        check(status == 404, "a refused request started a job")
    finally:
        d.kill()
    figures.append(("cross-origin", f"{', '.join(refused)}: 403 for repair, delete and key "
                                    "creation; no job started, no key made"))


def injected_credentials(cli, work, figures):
    emu = Emulator(cli, os.path.join(work, "emulator"), env={"CLOUDSHELL_LOG": "debug"})
    secret = emu.env["AWS_SECRET_ACCESS_KEY"]
    region = emu.regions[0]
    env = dict(emu.env, AWS_REGION=region)
    env.pop("CLOUDSHELL_LOG", None)
    try:
        up = subprocess.run([cli, "--endpoint-url", emu.endpoint, "--region", region, "up"],
                            env=env, capture_output=True, text=True, timeout=120)
        check(up.returncode == 0, f"cloudshell up: {up.stderr[-300:]}")
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(cli, [cli, "--endpoint-url", emu.endpoint, "--region", region,
                            "connect", "--inject-credentials"], env)
        transcript = b""

        def read_until(pattern, timeout=60):
            nonlocal transcript
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    try:
                        transcript += os.read(fd, 65536)
                    except OSError:
                        break
                if re.search(pattern, transcript):
                    return
            raise AssertionError(f"no {pattern!r} in {transcript[-300:]!r}")

        in_ps = []
        try:
            prompt = rb"emulator [^\]]*\][#$] "
            read_until(prompt)
            # The credentials go in right after the first prompt.
            time.sleep(2)
            os.write(fd, b"echo INJECTED=${#AWS_SECRET_ACCESS_KEY}; sleep 3\r")
            time.sleep(1)
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        with open(f"/proc/{p}/cmdline", "rb") as f:
                            if secret.encode() in f.read():
                                in_ps.append(p)
                    except OSError:
                        pass
            read_until(rb"INJECTED=\d+")
            time.sleep(3)
            os.write(fd, b"history | tail -n 20 > /dev/null; exit\r")
            _, status = os.waitpid(pid, 0)
        finally:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        length = re.search(rb"INJECTED=(\d+)", transcript).group(1).decode()
        check(length == str(len(secret)), f"the shell got a secret of {length} characters")
        check(not in_ps, f"the secret is in the command line of processes {in_ps}")
        check(secret.encode() not in transcript, "the secret was echoed to the terminal")
        leaks = []
        for root, _, files in os.walk(os.path.join(work, "emulator")):
            for name in files:
                path = os.path.join(root, name)
                try:
                    with open(path, "rb") as f:
                        if secret.encode() in f.read() and not name.endswith(".redb"):
                            leaks.append(path)
                except OSError:
                    pass
        log = emu.data + ".log"
        with open(log, "rb") as f:
            # Past the banner, where the emulator tells its operator the
            # test credentials it accepts.
            lines = f.read().split(b"\n")
            in_log = [n for n, line in enumerate(lines) if secret.encode() in line and n > 5]
        check(not in_log, f"the secret is in the emulator's debug log, lines {in_log[:5]}")
        check(not leaks, f"the secret was written to {leaks}")
        histories = [os.path.join(r, f) for r, _, fs in os.walk(emu.data) for f in fs
                     if f == ".bash_history"]
    finally:
        emu.kill()
    figures.append(("injected credentials", f"the shell had the {len(secret)}-character secret; "
                                            "it was in no process's command line, not echoed "
                                            "in the terminal, not in the emulator's debug log, "
                                            f"not in the home ({len(histories)} shell history "
                                            "file(s) checked)"))


def security(cli, work, opts):
    """Off loopback the daemon refuses to start without a token, and with
    one it answers nothing without it; S3 wants a key. Requests another web
    page can make (a form POST, a cross-site fetch, a DNS-rebinding page)
    change nothing. Credentials injected into a CloudShell shell are there
    for its programs and nowhere else: not in process lists, the terminal,
    logs or history. (That an agent serves nobody but its daemon is the
    `the_agent_serves_nobody_but_its_daemon` test in `cargo test`.)"""
    figures = []
    exposure(cli, work, figures)
    cross_origin(cli, work, figures)
    injected_credentials(cli, work, figures)
    return figures
