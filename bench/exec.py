#!/usr/bin/env python3
"""`cloudshell exec` over the emulator on loopback: output throughput and
time to first byte, with the same bytes through a local pipe for scale.

Usage: exec.py CLOUDSHELL RUNS MEGABYTES   (environment points at an emulator)
"""

import statistics
import subprocess
import sys
import time


def throughput(argv, total):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    got = 0
    while chunk := proc.stdout.read(1 << 20):
        got += len(chunk)
    proc.wait()
    elapsed = time.perf_counter() - start
    assert got == total and proc.returncode == 0, (got, proc.returncode)
    return total / elapsed / 1e6


def first_byte(argv):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return elapsed


def main():
    cloudshell, runs, megabytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    total = megabytes * 1_000_000
    remote = [cloudshell, "exec", "--", f"head -c {total} /dev/zero"]
    local = ["sh", "-c", f"head -c {total} /dev/zero"]
    throughput(remote, total)  # warm-up
    r = [throughput(remote, total) for _ in range(runs)]
    l = [throughput(local, total) for _ in range(runs)]
    t = [first_byte([cloudshell, "exec", "--", "echo x"]) for _ in range(runs)]
    print(f"{runs} runs each, {megabytes} MB per throughput run; medians (min-max)\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| exec output throughput | {statistics.median(r):.1f} MB/s ({min(r):.1f}-{max(r):.1f}) |")
    print(f"| same bytes through a local pipe | {statistics.median(l):.0f} MB/s |")
    print(f"| exec / local pipe | {statistics.median(r) / statistics.median(l):.3f} |")
    print(f"| exec start to first output byte | {statistics.median(t)*1000:.0f} ms ({min(t)*1000:.0f}-{max(t)*1000:.0f}) |")


if __name__ == "__main__":
    main()
