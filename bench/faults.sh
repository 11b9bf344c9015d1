#!/usr/bin/env bash
# The reliability suite: fault scenarios against a real daemon and real
# agents, report in docs/reliability.md (bench/faults/run.py says how).
#
# Usage: bench/faults.sh [--only SCENARIO ...] [--quick]
#   --quick: small sizes, a smoke run; the report is then not rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bins
report=(--report docs/reliability.md)
for a in "$@"; do [ "$a" = --quick ] && report=(); done
exec python3 -m bench.faults.run "$target/release/cloudshell" "${report[@]}" "$@"
