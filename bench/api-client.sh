#!/usr/bin/env bash
# API client benchmark: `cloudshell list` against the same DescribeEnvironments
# call through boto3 (with the shipped botocore model) and, when installed,
# the AWS CLI, all against one local emulator. Prints wall time and peak RSS
# per invocation with ratios to `cloudshell list`.
#
# Usage: bench/api-client.sh [RUNS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
target=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p cloudshell-cli -p cloudshell-emulator
python=${CLOUDSHELL_TEST_PYTHON:-python3}
if ! "$python" -c 'import boto3' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r tests/python/requirements.txt
  python=bench/.venv/bin/python
fi

. bench/lib/emulator.sh
export AWS_DATA_PATH=$PWD/models
# Something to list.
"$target/release/cloudshell" create --name bench >/dev/null

commands=("cloudshell list=$target/release/cloudshell list"
          "boto3 describe_environments=$python bench/boto3_list.py")
if command -v aws >/dev/null; then
  commands+=("aws cloudshell describe-environments=aws cloudshell describe-environments")
fi
echo "machine: $(nproc) cores, $(uname -r); emulator at $endpoint"
"$python" bench/compare.py "$runs" "${commands[@]}"
