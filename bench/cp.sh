#!/usr/bin/env bash
# cp benchmark: MB/s of `cloudshell cp` up and down for one file, through the
# shell session and through the presigned URLs, against one release emulator
# on loopback, runs interleaved so both routes see the same machine state.
#
# Usage: bench/cp.sh [RUNS] [MEBIBYTES]   (defaults 5 and 200)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
mebibytes=${2:-200}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p cloudshell-cli -p cloudshell-emulator

. bench/lib/emulator.sh
"$target/release/cloudshell" up >/dev/null 2>&1
head -c $((mebibytes << 20)) /dev/urandom >"$work/payload.bin"
echo "machine: $(nproc) cores, $(uname -r)"
python3 bench/cp.py "$target/release/cloudshell" "$runs" "$work/payload.bin" 2> >(grep -v WARN >&2)
