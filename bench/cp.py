#!/usr/bin/env python3
"""`cloudshell cp` up and down through the shell route and the URL route.

Usage: cp.py CLOUDSHELL RUNS FILE   (environment points at an emulator)

Each run copies FILE up and back down by both routes, in turn; the figure is
the wall time of the whole `cloudshell cp` process (sessions, hashing and the
final check included), as MB/s of the file's size.
"""

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def timed(argv):
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    return elapsed, json.loads(out.stdout)


def main():
    cloudshell, runs, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    size = os.path.getsize(path)
    want = sha256(path)
    routes = {"shell": [], "urls": ["--via-urls"]}
    results = {(r, d): [] for r in routes for d in ("up", "down")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            for route, flags in routes.items():
                remote = f":bench-{route}.bin"
                back = os.path.join(tmp, f"{route}.bin")
                elapsed, s = timed([cloudshell, "cp", "--json", *flags, path, remote])
                assert s["sha256"] == want, s
                results[(route, "up")].append(size / elapsed / 1e6)
                elapsed, s = timed([cloudshell, "cp", "--json", *flags, remote, back])
                assert s["sha256"] == want and sha256(back) == want, s
                results[(route, "down")].append(size / elapsed / 1e6)
                os.remove(back)
    print(f"file: {size / (1 << 20):.0f} MiB, {runs} runs per figure, median (min-max) MB/s")
    for (route, direction), values in results.items():
        print(
            f"  {route:5} {direction:4}: {statistics.median(values):7.1f}"
            f" ({min(values):.1f}-{max(values):.1f})"
        )
    for direction in ("up", "down"):
        ratio = statistics.median(results[("urls", direction)]) / statistics.median(
            results[("shell", direction)]
        )
        print(f"  urls/shell {direction}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
