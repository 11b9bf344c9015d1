#!/usr/bin/env bash
# Agent transport benchmark: PutShard and GetShard throughput over pinned
# mutual-TLS QUIC on loopback, 174,763-byte shards (1 MiB / 6), against a
# plain TCP loopback copy of the same bytes measured in the same run.
# Prints MB/s and the ratio to TCP.
#
# Usage: bench/transport.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(uname -r)"
cargo bench -q -p cloudshell-net --bench loopback -- --noplot 2>/dev/null | tee /dev/stderr | python3 bench/transport.py
