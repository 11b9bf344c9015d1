#!/usr/bin/env bash
# exec benchmark: output throughput (MB/s) of `cloudshell exec` over the
# emulator on loopback, and the time from starting `cloudshell exec` to the
# first output byte (session creation, WebSocket, shell start included).
#
# Usage: bench/exec.sh [RUNS] [MEGABYTES]   (defaults 10 and 100)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
megabytes=${2:-100}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p cloudshell-cli -p cloudshell-emulator

. bench/lib/emulator.sh
"$target/release/cloudshell" up >/dev/null 2>&1
echo "machine: $(nproc) cores, $(uname -r)"
python3 bench/exec.py "$target/release/cloudshell" "$runs" "$megabytes" 2> >(grep -v WARN >&2)
