"""What we ship: the size of `cloudshell` and of the agent the daemon
uploads to every CloudShell environment, as built by the `dist` profile
(stripped, link-time optimised), beside the release build developers
profile with (line tables kept) and that build stripped."""

import os
import shutil
import subprocess
import tempfile

from .common import TARGET

BINARIES = ("cloudshell", "cloudshell-agent")
# The targets issue 23 set, in MB (10^6 bytes).
TARGETS = {"cloudshell": 25.0, "cloudshell-agent": 6.0}


def size_mb(path):
    return os.path.getsize(path) / 1e6


def stripped_mb(path):
    """Size of a stripped copy (the release build keeps line tables)."""
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "b")
        shutil.copy(path, copy)
        subprocess.run(["strip", copy], check=True)
        return size_mb(copy)


def run():
    rows = []
    for name in BINARIES:
        release = os.path.join(TARGET, "release", name)
        dist = os.path.join(TARGET, "dist", name)
        rows.append((name, size_mb(release), stripped_mb(release), size_mb(dist), TARGETS[name]))
    return rows


def markdown(rows):
    lines = ["| binary | release MB (line tables) | release stripped MB | dist MB | target MB | dist / target |",
             "|---|---|---|---|---|---|"]
    for name, release, stripped, dist, target in rows:
        lines.append(f"| `{name}` | {release:.1f} | {stripped:.1f} | {dist:.1f} | {target:.0f} | "
                     f"{dist / target:.2f} |")
    return "\n".join(lines)
