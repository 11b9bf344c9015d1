"""S3 endpoint benchmark: `aws s3 cp` of one file up and down through the
daemon's S3 endpoint, against `cloudshell store put` / `get` of the same
file through the daemon's JSON API, in one run on one daemon (the embedded
emulator's nine local agents). Runs alternate (S3, API, S3, API, ...) so
drift on a shared machine hits both alike. Prints MB/s per run, the median,
the ratio S3 / JSON API and the daemon's peak RSS during each transfer.

Usage: python3 -m bench.s3 CLOUDSHELL_BINARY [SIZE_MIB [RUNS]]  (1024 3)
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from .faults.harness import kill_under as kill_agents_under, rss_mib
from .suite.common import reset_peak


def timed(pid, argv, env):
    reset_peak(pid)
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t, rss_mib(pid)


def main():
    cli = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    work = tempfile.mkdtemp(prefix="s3-bench-")
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_CA_BUNDLE", None)
    daemon = subprocess.Popen(
        [cli, "store", "serve", "--emulated", "--data-dir", f"{work}/store",
         "--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        url = s3 = None
        for line in daemon.stderr:
            m = re.search(r"API at (http://[0-9.:]+)/api", line)
            url = m.group(1) if m else url
            m = re.search(r"S3 endpoint at (http://[0-9.:]+)", line)
            s3 = m.group(1) if m else s3
            if "ready:" in line:
                break
        store = [cli, "store", "--url", url]
        key = subprocess.run(store + ["--json", "keys", "create"], check=True,
                             capture_output=True, text=True, env=env).stdout
        ids = re.search(r'"access_key_id":"([^"]+)".*"secret_access_key":"([^"]+)"', key)
        aws_env = dict(env, AWS_ACCESS_KEY_ID=ids.group(1),
                       AWS_SECRET_ACCESS_KEY=ids.group(2), AWS_DEFAULT_REGION="us-east-1",
                       AWS_CONFIG_FILE=f"{work}/none", AWS_SHARED_CREDENTIALS_FILE=f"{work}/none")
        aws = ["aws", "--endpoint-url", s3, "s3"]
        subprocess.run(aws + ["mb", "s3://bench"], check=True, stdout=subprocess.DEVNULL,
                       env=aws_env)
        src = f"{work}/in"
        with open(src, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(size):
                f.write(block[i % 256:] + block[:i % 256])
        nbytes = size << 20
        results = {k: [] for k in ("s3 up", "api up", "s3 down", "api down")}
        rss = {k: 0.0 for k in results}

        def record(name, seconds, peak):
            results[name].append(nbytes / seconds / 1e6)
            rss[name] = max(rss[name], peak)

        for run in range(runs):
            out = f"{work}/out"
            record("s3 up", *timed(daemon.pid, aws + ["cp", "--only-show-errors", src,
                                                      "s3://bench/big"], aws_env))
            record("s3 down", *timed(daemon.pid, aws + ["cp", "--only-show-errors",
                                                        "s3://bench/big", out], aws_env))
            if subprocess.run(["cmp", "-s", src, out]).returncode != 0:
                sys.exit("aws s3 cp: what came back differs")
            os.remove(out)
            record("api up", *timed(daemon.pid, store + ["put", src, "big"], env))
            record("api down", *timed(daemon.pid, store + ["get", "big", out], env))
            if subprocess.run(["cmp", "-s", src, out]).returncode != 0:
                sys.exit("cloudshell store get: what came back differs")
            os.remove(out)
            print(f"run {run + 1}: " + ", ".join(
                f"{k} {v[-1]:.0f} MB/s" for k, v in results.items()), flush=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"\n{size} MiB, {runs} runs each, median MB/s (min-max), daemon peak RSS")
        for k, v in results.items():
            print(f"  {k:<9} {med[k]:>6.0f} ({min(v):.0f}-{max(v):.0f})  {rss[k]:>5.0f} MiB")
        print(f"  S3 / JSON API: up {med['s3 up'] / med['api up']:.2f}, "
              f"down {med['s3 down'] / med['api down']:.2f}")
    finally:
        daemon.kill()
        daemon.wait()
        kill_agents_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
