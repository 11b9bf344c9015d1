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

work=$(mktemp -d)
trap 'kill "$emu_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$target/release/cloudshell-emulator" --listen 127.0.0.1:0 --data-dir "$work/emu" \
  --create-delay 0s >"$work/emu.json" 2>/dev/null &
emu_pid=$!
for _ in $(seq 50); do [ -s "$work/emu.json" ] && break; sleep 0.1; done
endpoint=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/emu.json")
export AWS_ENDPOINT_URL_CLOUDSHELL=$endpoint AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIAEMULATOR00000001 AWS_SECRET_ACCESS_KEY=cloudshell-emulator-secret-access-key
export AWS_CONFIG_FILE=$work/none AWS_SHARED_CREDENTIALS_FILE=$work/none
"$target/release/cloudshell" up >/dev/null 2>&1
echo "machine: $(nproc) cores, $(uname -r)"
python3 bench/exec.py "$target/release/cloudshell" "$runs" "$megabytes" 2> >(grep -v WARN >&2)
