"""The fuzz scenario: every `cargo fuzz` target in the workspace (SSM
frames, the agent wire protocol, STUN, shard headers, index records) run
for a fixed time each, as many at once as there are cores."""

import concurrent.futures
import glob
import os
import re
import subprocess

from .harness import check

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def targets():
    """(crate directory, target name) of every fuzz target."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "crates", "*", "fuzz", "fuzz_targets", "*.rs"))):
        crate = os.path.dirname(os.path.dirname(os.path.dirname(path)))
        out.append((crate, os.path.splitext(os.path.basename(path))[0]))
    return out


def cargo_fuzz(crate, *args, timeout):
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    return subprocess.run(["cargo", "fuzz", *args], cwd=crate, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_one(crate, target, seconds):
    r = cargo_fuzz(crate, "run", "-O", target, "--", f"-max_total_time={seconds}",
                   "-print_final_stats=1", "-rss_limit_mb=2048", timeout=seconds + 600)
    log = r.stderr
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    rss = re.search(r"stat::peak_rss_mb:\s*(\d+)", log)
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    artifact = re.search(r"Test unit written to (\S+)", log)
    return {
        "target": f"{os.path.basename(crate)}/{target}",
        "ok": r.returncode == 0,
        "runs": int(runs.group(1)) if runs else 0,
        "rss": int(rss.group(1)) if rss else 0,
        "cov": cov[-1] if cov else ("?", "?", "?"),
        "artifact": artifact.group(1) if artifact else None,
        "tail": "\n".join(log.strip().splitlines()[-15:]),
    }


def fuzz(cli, work, opts):
    """Each `cargo fuzz` target (malformed SSM frames and channel
    sequences, agent wire frames, STUN messages, shard headers, index
    records) runs for ten minutes under libFuzzer with AddressSanitizer:
    no crash, no hang, no leak, no allocation past 2 GiB."""
    seconds = 20 if opts.quick else int(opts.fuzz_minutes * 60)
    found = targets()
    check(found, "no fuzz targets found under crates/*/fuzz")
    has = subprocess.run(["cargo", "fuzz", "--version"], capture_output=True)
    check(has.returncode == 0, "cargo-fuzz is not installed: cargo install cargo-fuzz --locked")
    crates = sorted({c for c, _ in found})
    for crate in crates:
        r = cargo_fuzz(crate, "build", "-O", timeout=3600)
        check(r.returncode == 0, f"cargo fuzz build in {crate}: {r.stderr[-2000:]}")
    with concurrent.futures.ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda t: run_one(t[0], t[1], seconds), found))
    figures = []
    for res in results:
        cov, ft, corp = res["cov"]
        figures.append((res["target"], f"{'ok' if res['ok'] else 'FAILED'}: {res['runs']:,} runs "
                                       f"in {seconds // 60} min {seconds % 60} s, coverage {cov} "
                                       f"edges / {ft} features, corpus {corp}, peak RSS "
                                       f"{res['rss']} MB"))
    bad = [r for r in results if not r["ok"]]
    check(not bad, "; ".join(f"{r['target']} failed (input: {r['artifact']}):\n{r['tail']}"
                             for r in bad))
    return figures
