#!/usr/bin/env python3
"""Times commands side by side: wall time and peak RSS per invocation.

Runs the commands in turn (A B A B ...) after a warm-up so that drift on a
noisy machine hits both alike, and reports medians and the ratio of each
command to the first. Peak RSS comes from the kernel's rusage of each child
(ru_maxrss), wall time from a monotonic clock around fork..wait.

Usage: compare.py RUNS NAME=COMMAND [NAME=COMMAND ...]
"""

import os
import shlex
import statistics
import subprocess
import sys
import time


def run_once(argv):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{shlex.join(argv)} failed:\n{err}")
    return wall, rusage.ru_maxrss  # KiB on Linux


def main():
    runs = int(sys.argv[1])
    commands = [arg.split("=", 1) for arg in sys.argv[2:]]
    for _, cmd in commands:  # warm-up: page cache, Python bytecode cache
        run_once(shlex.split(cmd))
    results = {name: ([], []) for name, _ in commands}
    for _ in range(runs):
        for name, cmd in commands:
            wall, rss = run_once(shlex.split(cmd))
            results[name][0].append(wall)
            results[name][1].append(rss)
    base_name = commands[0][0]
    base_wall = statistics.median(results[base_name][0])
    base_rss = statistics.median(results[base_name][1])
    print(f"{runs} runs each, alternating; medians (min-max)\n")
    print("| command | wall ms | peak RSS MiB | wall vs first | RSS vs first |")
    print("|---|---|---|---|---|")
    for name, _ in commands:
        walls, rsss = results[name]
        w, r = statistics.median(walls), statistics.median(rsss)
        print(f"| {name} | {w*1000:.1f} ({min(walls)*1000:.1f}-{max(walls)*1000:.1f}) "
              f"| {r/1024:.1f} ({min(rsss)/1024:.1f}-{max(rsss)/1024:.1f}) "
              f"| {w/base_wall:.2f}x | {r/base_rss:.2f}x |")


if __name__ == "__main__":
    main()
