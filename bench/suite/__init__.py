"""The comparisons of docs/benchmarks.md (`python3 -m bench.suite.main`)."""
