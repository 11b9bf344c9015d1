"""Reads criterion's output for the loopback transport benchmark on stdin
and prints each measure in MB/s with its ratio to the TCP copy."""

import re
import sys

UNITS = {"B/s": 1, "KiB/s": 1024, "MiB/s": 1024**2, "GiB/s": 1024**3}

rates = {}
name = None
for line in sys.stdin:
    if line and not line[0].isspace() and "/" in line:
        name = line.strip().split("/", 1)[1]
    found = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) ", line)
    if found and name and name not in rates:
        rates[name] = float(found.group(1)) * UNITS[found.group(2)]
tcp = next((v for k, v in rates.items() if "TCP" in k), None)
print()
print(f"{'measure':<24} {'MB/s':>8} {'of TCP':>7}")
for k, v in rates.items():
    ratio = f"{v / tcp:.2f}" if tcp else "-"
    print(f"{k:<24} {v / 1e6:>8.0f} {ratio:>7}")
