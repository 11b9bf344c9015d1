"""The benchmark and fault harness, one importable package.

Run its programs from the repository's root as modules, never by path:

    python3 -m bench.suite.main ...   # docs/benchmarks.md (bench/run)
    python3 -m bench.faults.run ...   # docs/reliability.md (bench/faults.sh)
    python3 -m bench.s3 ...           # bench/s3.sh

- `bench.faults`: a real daemon and emulator driven as a user would, the
  fault scenarios, and `harness` (processes, waits on conditions, content);
- `bench.suite`: the comparisons of docs/benchmarks.md;
- `bench.peers`: the peers compared against (Tahoe-LAFS);
- `bench.lib`: a simulated wide-area network (`netlab`).
"""
