"""Runs every comparison of docs/benchmarks.md in one go and writes it.

Usage (through bench/run, which builds and installs what this needs):
    main.py --python PY --aws AWS [--only SECTION ...] [--quick] [--out FILE]

Sections: api, binaries, pipeline, endtoend, s3, hedging, wan. `--only` reruns some and keeps
the others as they are in the report; `--quick` runs small sizes into a
scratch report (a smoke test of the harness, not figures to publish).
"""

import argparse
import os
import sys
import time

import random
import shutil
import tempfile

from . import api, binaries, endtoend, hotspots, pipeline, s3peers, wan
from .common import CLI, ROOT, Report, log, machine
from ..faults import harness, scenarios

ORDER = ["intro", "api", "binaries", "pipeline", "endtoend", "profile", "s3", "hedging", "wan",
         "other"]
COMMAND = "bench/run"


def section_api(args):
    r = api.run(args.python, args.aws, runs=10 if args.quick else 30)
    return f"""## API client: `cloudshell list` against boto3 and the AWS CLI

One emulator, one environment to list, and the same DescribeEnvironments
call made three ways: `cloudshell list` (the `dist` build users install;
the release build, with line tables, on the next row), a five-line boto3
script using the model shipped in `models/` (`bench/boto3_list.py`), and
`aws cloudshell describe-environments` (AWS CLI v1 from PyPI, the same
model on `AWS_DATA_PATH`). Each figure is a whole process: start-up,
credentials, signing, the request, the output.

{api.markdown(r)}

The Python clients pay for the interpreter and for loading botocore's
models and endpoint rules before they send a byte; the request itself is
the same for all three.
"""


def section_pipeline(args):
    found = pipeline.run()
    return f"""## Store pipeline per core, against memcpy

`cargo bench -p cloudshell-store --bench pipeline` (criterion, one thread,
64 MiB in 1 MiB chunks, all rows from one run). `put` is what a put does
per chunk on its worker thread: AES-256-GCM seal, Reed-Solomon 6+3, each
shard framed behind its header, BLAKE3 of every shard. `get` is BLAKE3 of
the six shards used, decode with data shards 0, 2 and 4 missing, GCM open.
The parts are measured alone to show where a put's time goes.

{pipeline.markdown(found)}

{pipeline.analysis(found)}
"""


PROFILES = {}


def section_endtoend(args):
    size, files = (64, 500) if args.quick else (1024, 10_000)
    r = endtoend.run(size, files)
    PROFILES.update(r["results"]["cloudshell store"].get("profile") or {})
    return f"""## End to end on loopback: our store against Tahoe-LAFS

Both systems on this machine with nine storage processes: ours is
`cloudshell store serve --emulated` (the daemon, its embedded emulator,
nine agents, every shard fsynced), Tahoe-LAFS 1.20 (PyPI, its own
virtualenv) is one introducer, nine storage nodes and one client node,
shares needed 6, total 9, happy 9 (one share per node, as ours), over
Foolscap (its faster storage protocol here). The same bytes go through
each one's HTTP API from the same Python client: one file of
{size} MiB streamed up and down, then {files:,} files of 4 KiB with
{endtoend.THREADS} requests at once, each read back and compared. "Front"
is our daemon against Tahoe's client node (the process a user talks to),
"back" the nine agents against the nine storage nodes and the introducer;
both are peak RSS during the step (VmHWM, reset before it). CPU is user +
system seconds of all of them during the step.

{endtoend.markdown(r)}

{endtoend.analysis(r)}
"""


def section_profile(args):
    if not PROFILES:
        return None
    return f"""## Where the time goes

The same steps once more under `perf record` (software clock sampling at
499 Hz, call graphs; this machine has no hardware counters), over the
daemon and its nine agents, samples summed by what the symbol does:

{hotspots.markdown(PROFILES)}

What this says, for the next person to make it faster:

- The coding work is the small part. Encryption, Reed-Solomon and BLAKE3
  together are about a tenth of the samples of a 1 GiB put; the rest is
  moving bytes: copies in user space (memmove), the kernel copying shard
  files into the page cache and syncing them, QUIC packetising every shard
  into 1.2 KB datagrams, and threads waking each other (scheduler symbols,
  the largest share) across ten processes on two cores. The put pipeline
  alone runs at about 1.7 GiB/s per core (the pipeline section), far above
  what the nodes take, so a put here is bound by the nine local agents and
  their disk, not by the daemon.
- Dropped datagrams were the largest single cost until 2026-12-01: the
  kernel's default UDP buffers (about 208 KiB) overflowed on the daemon's
  one socket when nine agents answered reads at once, one datagram in
  twenty (`RcvbufErrors` in `/proc/net/snmp`), and QUIC paid for each
  with a retransmission and a smaller window. With 4 MiB asked each way a
  1 GiB get on loopback went from about 200 to 350 MiB/s. Watch that
  counter first when a transfer is slower than its CPU explains.
- Copies: shards go to QUIC by reference both ways (an agent answers a
  read with the file it read, head and shard as two pieces). A get reads
  each answer into spare capacity, slices the payload after the header
  and concatenates the data shards once; the decoded chunks move into the
  HTTP body. What is left of its memmove is that concatenation, QUIC's own
  reassembly and packetising, and reading the request body.
- Page faults: the long-running processes use a fixed glibc mmap
  threshold of 128 KiB (`cloudshell_store::malloc`), so a buffer over it
  is fresh mmap'd memory, faulted in and zeroed by the kernel. Puts now
  reuse their chunk and shard buffers (a few kept per store), which made
  them about 9% faster at the same peak; a get's buffers (each answer
  read from QUIC, the agents' file reads) are still fresh.
- Decoding on a healthy store: a read asks k shards, data shards first
  (one spare more when they are late), and uses the first k good ones;
  when a parity shard makes up the k
  first, it waits up to as long as the k took (at most 50 ms) for the data
  shard, since decoding costs CPU the S3 client needs too. With 10 ms, a
  sixth of the daemon's CPU during an S3 get was Reed-Solomon.
- Small files: each 4 KiB file is nine shard files, each written to a
  temporary name, fsynced, renamed and its directory fsynced (agents now
  share a directory fsync between the shards that arrive together), and
  one index commit; scheduling dominates. Packing small files into shared
  chunks would close most of that gap.
"""



def section_s3(args):
    size, files, rounds = (64, 200, 1) if args.quick else (1024, 2000, 3)
    r = s3peers.run(args.aws, size, files, rounds)
    return f"""## Through S3: our endpoint against Garage

Garage {s3peers.garage.VERSION} (`cargo install garage --locked`, built into
`~/.cache/cloudshell-bench/garage` on the first run) is what a self-hoster
picks for a geo-distributed S3 store: three nodes on this machine,
replication factor 3, its default settings (no encryption, no erasure
coding, no fsync of data blocks). Ours is `cloudshell store serve
--emulated`: the daemon's S3 endpoint and nine agents, every shard
encrypted, coded 6 + 3 and fsynced. The same client for both, the AWS CLI
(`aws s3 cp`, 16 MB parts, its ten requests at once): one {size} MiB object
up and down, then {files:,} objects of 4 KiB up and down with `--recursive`,
each read back and compared; {rounds} rounds, the systems taking turns.
Memory is peak RSS during each step (VmHWM, reset before it).

{s3peers.markdown(r)}
"""


def section_hedging(args):
    work = tempfile.mkdtemp(prefix="bench-hedging-")
    try:
        figures, rates = scenarios.slow_and_flapping(CLI, work, random.Random(7))
    finally:
        # The agents run detached in their homes and outlive the daemon.
        harness.kill_under(work)
        shutil.rmtree(work, ignore_errors=True)
    rows = "\n".join(f"| {name} | {text} |" for name, text in figures)
    return f"""## Writes while nodes misbehave (hedged writes)

Twelve regions (so a chunk's nine shards always have spare nodes), four
clients uploading files of 0-2 MiB through the JSON API: 20 s healthy,
20 s with one agent frozen (SIGSTOP) three seconds in four, 60 s with an
agent SIGKILLed every 6 s (the scenario of `bench/faults.sh --only
node-trouble`, whose correctness checks run here too: nothing
half-visible, no refused upload while nine nodes serve, every file
bit-exact with three nodes down afterwards). A write not acknowledged
within its node's deadline is written to a spare node as well.

Healthy: {rates['healthy']:.1f} uploads/s. With a node frozen:
**{rates['frozen']:.2f}** of the healthy rate; with {rates['kills']} agents killed in
60 s: **{rates['flapping']:.2f}** (target: at least 0.5, no failed upload).

| step | what happened |
|---|---|
{rows}
"""


def section_wan(args):
    size, runs = (32, 1) if args.quick else (128, 2)
    r = wan.run(size, runs)
    return f"""## Under a simulated wide-area network

Each of the nine agents runs in its own network namespace, its link to the
daemon capped each way by `tc tbf` and delayed by a relay in the harness
(`bench/lib/netlab.py`: it forwards Ethernet frames between two veth
pairs, so QUIC, IP and ARP see an ordinary wire; this kernel has no
`netem`). The emulator starts each region's shells in that region's
namespace, so the agents the daemon installs there reach it only through
their link. "Equal" gives every node {wan.EQUAL_MBS} MB/s, "unequal" caps of
1 to 8 MB/s that do not follow distance; delays are the same in both.

The ideal counts bandwidth only: a put must carry every node its shard of
each chunk (a sixth of the file each), so it ends when the node with the
least bandwidth has; a get needs only six shards per chunk, so it can end
when the six fastest nodes have each sent a sixth of the file. Round
trips, slow start and loss recovery are not in the ideal, so a ratio of 1
is out of reach; for scale, one TCP stream (Linux cubic) over the
farthest link (110 ms each way, 4 MB/s) moved 3.1 MB/s, 78% of its cap,
over 20 MB.

{wan.markdown(r)}

{wan.analysis(r)}
"""


def section_intro(args, started, ran):
    return f"""# Benchmarks

Every comparison below is measured side by side in one run of one
command, on this machine:

    {COMMAND}

(`bench/run --only wan` reruns one section; `bench/run --quick` is a small
smoke run into a scratch file.) It builds the release binaries and the
`dist` ones users install, makes
virtualenvs under `~/.cache/cloudshell-bench` for boto3 with the AWS CLI
and for Tahoe-LAFS, builds Garage there (`cargo install`, once), and needs root for the network namespaces. Ratios are
what to read; absolute figures are context, from a shared 2-core machine.

Last full run: {time.strftime('%Y-%m-%d')}, {(time.time() - started) / 60:.0f} minutes; each section
says when it was measured. Machine: {machine()}.
"""


def section_binaries(args):
    rows = binaries.run()
    return f"""## What we ship: binary sizes

`cargo build --profile dist` is what a user installs and what the daemon
uploads to each CloudShell environment (the agent sits next to the
`cloudshell` it runs with): stripped, one codegen unit, link-time
optimisation across crates. The release profile keeps line tables for
profiling and backtraces; its stripped size is shown for comparison.

{binaries.markdown(rows)}
"""


SECTIONS = {"api": section_api, "binaries": section_binaries, "pipeline": section_pipeline,
            "endtoend": section_endtoend, "s3": section_s3, "hedging": section_hedging,
            "wan": section_wan}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--python", required=True)
    p.add_argument("--aws", required=True)
    p.add_argument("--only", nargs="*", choices=list(SECTIONS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = p.parse_args()
    if args.quick and args.out == os.path.join(ROOT, "docs", "benchmarks.md"):
        args.out = "/tmp/benchmarks-quick.md"
    report = Report(args.out, ORDER)
    started = time.time()
    ran = []
    command = COMMAND + (" --only " + " ".join(args.only) if args.only else "")
    stamp = f"\n_Measured {time.strftime('%Y-%m-%d')} by `{command}`._\n"
    for name in args.only or list(SECTIONS):
        log(f"section {name}")
        report.put(name, SECTIONS[name](args) + stamp)
        ran.append(name)
        if name == "endtoend":
            text = section_profile(args)
            if text:
                report.put("profile", text + stamp)
    # The intro describes a run of every section; a partial one leaves it.
    if not args.only:
        report.put("intro", section_intro(args, started, ran))
    log(f"wrote {args.out} in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
