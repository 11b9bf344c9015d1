"""What every benchmark section needs: paths, the machine's description,
timing and memory of processes, and a report that sections are merged
into, so one section can be rerun without the others."""

import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
CLI = os.path.join(TARGET, "release", "cloudshell")
# What users install (`cargo build --profile dist`): stripped, LTO.
DIST_CLI = os.path.join(TARGET, "dist", "cloudshell")
EMULATOR = os.path.join(TARGET, "release", "cloudshell-emulator")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "cloudshell-bench")
MIB = 1 << 20


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def machine():
    """One line: cores, CPU, kernel, toolchain."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, "
            f"{rustc}, Python {platform.python_version()}")


def status_kib(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux 4.0+)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def cpu_seconds(pid):
    """User + system CPU seconds a live process has used."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def measured(label, front, back, fn):
    """Runs fn; returns its wall seconds, the peak RSS (MiB, VmHWM reset
    before) of the `front` processes summed, of the `back` ones summed and
    of the largest back one, and the CPU seconds of all of them."""
    pids = [*front, *back]
    for p in pids:
        reset_peak(p)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    t = time.monotonic()
    fn()
    wall = time.monotonic() - t
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    peaks = {p: (status_kib(p, "VmHWM") or 0) / 1024 for p in pids}
    front_mib = sum(peaks[p] for p in front)
    back_mib = sum(peaks[p] for p in back)
    most = max([peaks[p] for p in back] or [0])
    log(f"{label}: {wall:.1f} s, front {front_mib:.0f} MiB, "
        f"back {back_mib:.0f} MiB (largest {most:.0f}), cpu {cpu:.1f} s")
    return dict(wall=wall, front=front_mib, back=back_mib, largest_back=most, cpu=cpu)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def span(xs, fmt="{:.1f}"):
    """median (min-max)"""
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def mbps(nbytes, seconds):
    return nbytes / seconds / 1e6


def content_file(path, size, seed=1):
    """A file of `size` pseudo-random bytes (incompressible, every MiB
    different), written in 1 MiB blocks."""
    block = _block(seed)
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            r = (i * 7919) % MIB
            part = (block[r:] + block[:r])[:left]
            f.write(part)
            left -= len(part)
            i += 1


def _block(seed):
    import hashlib
    return hashlib.shake_256(f"bench-{seed}".encode()).digest(MIB)


class Report:
    """docs/benchmarks.md as sections between markers; writing one
    section keeps the others as they were."""

    HEAD = "<!-- section:{} -->"
    TAIL = "<!-- /section:{} -->"

    def __init__(self, path, order):
        self.path = path
        self.order = order

    def _read(self):
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            return {}
        out = {}
        for name in re.findall(r"<!-- section:([\w-]+) -->", text):
            m = re.search(re.escape(self.HEAD.format(name)) + r"\n(.*?)"
                          + re.escape(self.TAIL.format(name)), text, re.S)
            if m:
                out[name] = m.group(1)
        return out

    def put(self, name, markdown):
        sections = self._read()
        sections[name] = markdown.rstrip("\n") + "\n"
        names = [n for n in self.order if n in sections]
        names += [n for n in sections if n not in names]
        with open(self.path + ".tmp", "w") as f:
            for n in names:
                f.write(self.HEAD.format(n) + "\n" + sections[n] + self.TAIL.format(n) + "\n\n")
        os.replace(self.path + ".tmp", self.path)


def step_row(step, size, files, unit):
    """The label of a step (one big transfer or many small ones) and how
    to turn its seconds into a rate."""
    if "GiB" in step:
        return f"{step.split()[0]} {size // MIB} MiB", lambda w: f"{size / w / 1e6:.1f} MB/s"
    return f"{step.split()[0]} {files:,} x 4 KiB", lambda w: f"{files / w:.0f} {unit}/s"
