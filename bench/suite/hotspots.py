"""Where the time goes: `perf record` (software clock sampling; this
machine has no hardware counters) of the daemon and its agents during a
step, summed into categories by symbol and library."""

import os
import re
import signal
import subprocess
import tempfile
import time

from .common import log

# First match wins; matched against "library symbol".
CATEGORIES = [
    ("AES-GCM (file encryption and QUIC packets)", r"aes|gcm|ghash|gfmul|aws_lc.*(seal|open)"),
    ("Reed-Solomon", r"reed_solomon|rs_|galois|gf_mul|engine::avx|engine::ssse3"),
    ("BLAKE3", r"blake3"),
    ("SHA-256 (TLS, transcripts)", r"sha256|sha2"),
    ("memcpy / memmove / memset", r"memcpy|memmove|memset|copy_user|rep_movs|clear_page|copy_page"),
    ("allocator, page faults", r"malloc|free|realloc|_int_|mmap|munmap|brk|page_fault|handle_mm|do_anonymous|do_user_addr_fault|lru|zap_|unmap"),
    ("UDP send/receive (kernel)", r"udp|ip_|__ip|sock|skb|net_|dev_|veth|loopback|__sys_send|__sys_recv|napi|netif|inet"),
    ("files, fsync (kernel)", r"ext4|jbd2|fsync|vfs_|filemap|folio|blk|bio|iomap|xfs|btrfs|overlay|write_iter|generic_perform|find_get_block|dentry|inode|path_|link_path|namei|d_alloc|__d_lookup|lookup_fast|open|getdents|filldir"),
    ("QUIC (quinn)", r"quinn"),
    ("HTTP (hyper, axum)", r"hyper|axum|h2::|http::"),
    ("index (redb)", r"redb"),
    ("async runtime, threads waking (kernel)", r"tokio|futex|schedule|epoll|finish_task_switch|pick_next|try_to_wake|wake_up|syscall_exit|entry_syscall|do_syscall|mio|raw_spin|irqrestore|select_task|enqueue|dequeue|update_curr|ttwu|switch_to"),
]


def record(pids, fn):
    """Runs fn while perf samples `pids`; returns (categories, top symbols)
    as percentages of all samples, or None without perf."""
    data = tempfile.mktemp(prefix="bench-perf-", suffix=".data")
    try:
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "499", "-g", "-o", data,
                                 "-p", ",".join(str(p) for p in pids)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None
    time.sleep(0.5)
    try:
        fn()
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    try:
        text = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                               "-g", "none", "--sort", "dso,sym", "--percent-limit", "0.05"],
                              capture_output=True, text=True, timeout=300).stdout
    finally:
        if os.path.exists(data):
            os.unlink(data)
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
    cats = {}
    for pct, dso, sym in rows:
        key = f"{dso} {sym}".lower()
        name = next((n for n, rx in CATEGORIES if re.search(rx, key)), "other")
        cats[name] = cats.get(name, 0.0) + pct
    top = sorted(rows, reverse=True)[:8]
    others = [r for r in sorted(rows, reverse=True)
              if not any(re.search(rx, f"{r[1]} {r[2]}".lower()) for _, rx in CATEGORIES)]
    log("profile, largest uncategorised: " + "; ".join(f"{d} {y[:50]} {p:.1f}%" for p, d, y in others[:12]))
    log("profile: " + ", ".join(f"{n} {p:.0f}%" for n, p in sorted(cats.items(), key=lambda x: -x[1])[:6]))
    return cats, top


def markdown(profiles):
    """profiles: {step: (cats, top)}"""
    steps = [s for s, p in profiles.items() if p]
    if not steps:
        return "perf was not available; no profile."
    names = []
    for s in steps:
        for n, _ in sorted(profiles[s][0].items(), key=lambda x: -x[1]):
            if n not in names:
                names.append(n)
    out = ["| share of samples | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
    for n in names:
        out.append(f"| {n} | " + " | ".join(f"{profiles[s][0].get(n, 0):.0f}%" for s in steps) + " |")
    out.append("")
    for s in steps:
        tops = ", ".join(f"`{sym[:60]}` {pct:.1f}%" for pct, _, sym in profiles[s][1][:5])
        out.append(f"Hottest symbols, {s}: {tops}.")
        out.append("")
    return "\n".join(out)
