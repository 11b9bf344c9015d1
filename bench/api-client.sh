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

work=$(mktemp -d)
trap 'kill "$emu_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$target/release/cloudshell-emulator" --listen 127.0.0.1:0 --data-dir "$work/emu" \
  --create-delay 0s >"$work/emu.json" 2>/dev/null &
emu_pid=$!
for _ in $(seq 50); do [ -s "$work/emu.json" ] && break; sleep 0.1; done
endpoint=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/emu.json")

export AWS_ENDPOINT_URL_CLOUDSHELL=$endpoint AWS_DATA_PATH=$PWD/models
export AWS_ACCESS_KEY_ID=AKIAEMULATOR00000001 AWS_SECRET_ACCESS_KEY=cloudshell-emulator-secret-access-key
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=$work/none AWS_SHARED_CREDENTIALS_FILE=$work/none
# Something to list.
"$target/release/cloudshell" create --name bench >/dev/null

commands=("cloudshell list=$target/release/cloudshell list"
          "boto3 describe_environments=$python bench/boto3_list.py")
if command -v aws >/dev/null; then
  commands+=("aws cloudshell describe-environments=aws cloudshell describe-environments")
fi
echo "machine: $(nproc) cores, $(uname -r); emulator at $endpoint"
"$python" bench/compare.py "$runs" "${commands[@]}"
