"""Runs the fault scenarios against a real daemon and writes the report.

Usage: python3 -m bench.faults.run CLOUDSHELL_BINARY [--only NAME ...]
       [--quick] [--report PATH] [scenario options]
"""

import argparse
import datetime
import os
import platform
import sys
import time
import traceback

from .harness import Failed, Workdir
from .scenarios import SCENARIOS


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cli")
    p.add_argument("--only", nargs="*", choices=sorted(SCENARIOS))
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few rounds: a smoke run, not the report's")
    p.add_argument("--report", help="write the markdown report here")
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--total-mib", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--damaged-chunks", type=int, default=300)
    p.add_argument("--load-minutes", type=float, default=10)
    p.add_argument("--fuzz-minutes", type=float, default=10)
    p.add_argument("--race-seconds", type=float, default=330)
    opts = p.parse_args()
    if opts.quick:
        opts.files, opts.total_mib, opts.rounds = 60, 96, 2
        opts.kills, opts.damaged_chunks = 3, 40
    names = opts.only or list(SCENARIOS)
    results = []
    started = time.monotonic()
    for name in names:
        fn = SCENARIOS[name]
        print(f"== {name}", flush=True)
        t = time.monotonic()
        with Workdir() as work:
            try:
                figures, error = fn(opts.cli, work, opts), None
            except Failed as e:
                figures, error = [], str(e)
            except Exception:  # noqa: BLE001 - a crash is reported like a failure
                figures, error = [], traceback.format_exc()
        secs = time.monotonic() - t
        for label, value in figures:
            print(f"   {label}: {value}", flush=True)
        print(f"   {'FAILED: ' + error if error else 'passed'} ({secs:.0f} s)", flush=True)
        results.append((name, fn.__doc__, figures, error, secs))
        if opts.report:
            # Kept up to date as scenarios finish, so a long run cut short
            # still leaves what it found.
            write_report(opts, results, time.monotonic() - started, merge=True)
    total = time.monotonic() - started
    failed = [r[0] for r in results if r[3]]
    if opts.report:
        write_report(opts, results, total, merge=bool(opts.only))
    print(f"{len(results) - len(failed)} of {len(results)} scenarios passed in {total / 60:.1f} min")
    sys.exit(1 if failed else 0)


def write_report(opts, results, total, merge):
    sections = {}
    for name, doc, figures, error, secs in results:
        sections[name] = section(name, doc, figures, error, secs)
    header = None
    if merge and os.path.exists(opts.report):
        # A partial run updates its scenarios' sections and keeps the rest.
        with open(opts.report) as f:
            old = f.read().split("\n## ")
        header = old[0].rstrip("\n").split("\n") + [""]
        for part in old[1:]:
            name = part.split(":", 1)[0]
            sections.setdefault(name, ["## " + part.rstrip("\n"), ""])
    lines = header or report_header(opts, total)
    for name in list(SCENARIOS) + sorted(set(sections) - set(SCENARIOS)):
        lines += sections.get(name, [])
    with open(opts.report, "w") as f:
        f.write("\n".join(lines))


def section(name, doc, figures, error, secs):
    lines = [f"## {name}: {'FAILED' if error else 'passed'}", ""]
    lines += [" ".join(doc.split()), ""]
    lines += [f"`bench/faults.sh --only {name}` ({secs / 60:.1f} min)", ""]
    if figures:
        lines += ["| | |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in figures]
        lines.append("")
    if error:
        lines += ["```", error.strip(), "```", ""]
    return lines


def report_header(opts, total):
    cmd = "bench/faults.sh"
    return [
        "# Reliability",
        "",
        "What the store survives, shown by `bench/faults.sh` (the scenarios in",
        "`bench/faults/scenarios.py`): a real `cloudshell store serve` daemon on",
        "the emulator with nine regions, each a real agent process, hurt the way",
        "the world would hurt it. Regenerate this file with:",
        "",
        "```sh",
        f"{cmd}            # about {total / 60:.0f} minutes on the machine below",
        "```",
        "",
        f"Run {datetime.date.today()} on {os.cpu_count()} cores, Linux "
        f"{platform.release()}, release build, seed {opts.seed}.",
        "",
        "The fuzz scenario needs `cargo install cargo-fuzz --locked`; the",
        "others need Python 3 with boto3 (`tests/python/requirements.txt`).",
        "",
    ]


if __name__ == "__main__":
    main()
