#!/usr/bin/env bash
# S3 endpoint benchmark: `aws s3 cp` of a 1 GiB file up and down through
# the daemon's S3 endpoint against `cloudshell store put` / `get` through
# its JSON API, in one run (bench/s3.py says how). Needs the AWS CLI
# (`pip install awscli`).
#
# Usage: bench/s3.sh [SIZE_MIB [RUNS]]   (default 1024 3)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bins
echo "machine: $(nproc) cores, $(uname -r), $(aws --version 2>&1 | cut -d' ' -f1)"
python3 -m bench.s3 "$target/release/cloudshell" "$@"
