# Sourced by the bench scripts: starts a release emulator in a temporary
# directory (stopped on exit) and exports what AWS tools need to reach it.
# Expects $target (the cargo target directory); sets $work and $endpoint.
work=$(mktemp -d)
trap 'kill "$emu_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$target/release/cloudshell-emulator" --listen 127.0.0.1:0 --data-dir "$work/emu" \
  --create-delay 0s >"$work/emu.json" 2>/dev/null &
emu_pid=$!
for _ in $(seq 50); do [ -s "$work/emu.json" ] && break; sleep 0.1; done
endpoint=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/emu.json")
export AWS_ENDPOINT_URL_CLOUDSHELL=$endpoint AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=AKIAEMULATOR00000001 AWS_SECRET_ACCESS_KEY=cloudshell-emulator-secret-access-key
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$work/none AWS_SHARED_CREDENTIALS_FILE=$work/none
