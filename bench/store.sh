#!/usr/bin/env bash
# Store daemon benchmark: put and get of 64 MiB and 1 GiB files through
# `cloudshell store` with nine local agents (the embedded emulator), MB/s
# and the daemon's peak RSS for each, to show memory does not grow with
# file size.
#
# Usage: bench/store.sh [SIZE_MIB ...]   (default 64 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bins
echo "machine: $(nproc) cores, $(uname -r)"
python3 bench/store.py "$target/release/cloudshell" "$@"
