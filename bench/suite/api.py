"""API client: `cloudshell list` against the same DescribeEnvironments call
through boto3 (with the shipped service model) and through the AWS CLI
(awscli from PyPI, the model on its data path), all against one emulator.
Commands run in rounds after a warm-up, each round in a new order, so
drift on a noisy machine and what ran just before hit all alike; each invocation's wall time, CPU time (user
+ system, from the kernel's rusage of the child) and peak RSS."""

import json
import os
import random
import shlex
import subprocess
import tempfile
import time

from .common import CLI, DIST_CLI, EMULATOR, ROOT, log, med, span

GNU_TIME = "/usr/bin/time"


def _spawned(argv, env):
    """Runs argv to the end: (wall s, rusage, stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{err}")
    return wall, ru, err


def run_once(argv, env):
    """(wall s, CPU s, peak RSS MiB) of argv, from two runs of it. Wall
    and CPU (microseconds, from wait4) come from argv run by itself: under
    GNU time, time's own start-up (about a millisecond) was in every wall
    figure, a fifth of ours and nothing of boto3's. Peak RSS comes from a
    second run under GNU time, not from wait4: Python starts children with
    vfork, and Linux then counts the parent's own peak (this harness,
    about 25 MiB) into the child's ru_maxrss, which hid everything smaller."""
    wall, ru, _ = _spawned(argv, env)
    with tempfile.NamedTemporaryFile("r") as out:
        _spawned([GNU_TIME, "-f", "%M", "-o", out.name, *argv], env)
        kib = out.read().split()[-1]
    return wall, ru.ru_utime + ru.ru_stime, int(kib) / 1024


def run(python, aws, runs=30):
    work = tempfile.mkdtemp(prefix="bench-api-")
    emu = subprocess.Popen([EMULATOR, "--listen", "127.0.0.1:0", "--data-dir", f"{work}/emu",
                            "--create-delay", "0s"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(emu.stdout.readline())
        env = dict(os.environ, AWS_ENDPOINT_URL_CLOUDSHELL=info["endpoint"],
                   AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID=info["access_key_id"],
                   AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=f"{work}/none",
                   AWS_SHARED_CREDENTIALS_FILE=f"{work}/none",
                   AWS_DATA_PATH=os.path.join(ROOT, "models"))
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE"):
            env.pop(k, None)
        subprocess.run([CLI, "create", "--name", "bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        commands = [("cloudshell list", [DIST_CLI, "list"]),
                    ("cloudshell list (release build)", [CLI, "list"]),
                    ("boto3 describe_environments",
                     [python, os.path.join(ROOT, "bench", "boto3_list.py")]),
                    ("aws cloudshell describe-environments",
                     [aws, "cloudshell", "describe-environments"])]
        for _, argv in commands:  # warm-up: page cache, bytecode caches
            run_once(argv, env)
        results = {name: [] for name, _ in commands}
        # A new order each round: in a fixed one, the run that came right
        # after the AWS CLI (a 300 ms Python process) always started with
        # cold caches, and took a millisecond more than the same binary
        # one place later.
        order = random.Random(23)
        for _ in range(runs):
            for name, argv in order.sample(commands, len(commands)):
                results[name].append(run_once(argv, env))
        log(f"api: {runs} runs of each done")
        versions = subprocess.run(
            [python, "-c", "import boto3, botocore; print(boto3.__version__)"],
            capture_output=True, text=True).stdout.strip()
        aws_version = subprocess.run([aws, "--version"], capture_output=True,
                                     text=True).stdout.strip() or "?"
        return dict(runs=runs, results=results, boto3=versions, aws=aws_version.split()[0])
    finally:
        emu.kill()
        emu.wait()


def markdown(r):
    res = r["results"]
    base = res["cloudshell list"]
    bw, bc, br = (med([x[i] for x in base]) for i in range(3))
    out = [f"{r['runs']} runs each, alternating, medians (min-max); boto3 {r['boto3']}, "
           f"{r['aws']}.", "",
           "| command | wall ms | CPU ms (user+sys) | peak RSS MiB | wall / ours | CPU / ours | RSS / ours |",
           "|---|---|---|---|---|---|---|"]
    for name, xs in res.items():
        w = [x[0] * 1000 for x in xs]
        c = [x[1] * 1000 for x in xs]
        m = [x[2] for x in xs]
        out.append(f"| {name} | {span(w)} | {span(c)} | {span(m)} | {med(w) / bw / 1000:.1f}x | "
                   f"{med(c) / bc / 1000:.1f}x | {med(m) / br:.1f}x |")
    return "\n".join(out)
