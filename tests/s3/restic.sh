#!/usr/bin/env bash
# restic (Debian's package) at its defaults against the store's S3 endpoint:
# init, a backup of a tree of 3,000 files, check --read-data, a restore
# compared byte for byte, then a second backup that must send only what
# changed; then the bucket is removed with the AWS CLI.
# Usage: restic.sh S3_ENDPOINT ACCESS_KEY SECRET_KEY WORKDIR [BUCKET]
set -euo pipefail
endpoint=$1 key=$2 secret=$3 work=$4 bucket=${5:-restic}
mkdir -p "$work"
cd "$work"
export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret
export RESTIC_PASSWORD=correct-horse-battery-staple
export RESTIC_REPOSITORY=s3:$endpoint/$bucket RESTIC_CACHE_DIR=$work/cache
fail() { echo "restic: $*" >&2; exit 1; }

# 3,000 files in 400 directories, empty to 256 KiB, a few of 2 MiB.
python3 - <<'EOF'
import os, random
random.seed(7)
for i in range(3000):
    d = f"tree/d{i % 40}/e{i % 10}"
    os.makedirs(d, exist_ok=True)
    size = 2 << 20 if i % 500 == 0 else random.choice([0, 1, 100, 4096, 30_000, 262_144])
    with open(f"{d}/f{i}.bin", "wb") as f:
        f.write(random.randbytes(size))
EOF

restic init >/dev/null
restic backup tree >/dev/null
restic check --read-data >check.log 2>&1 || { cat check.log >&2; fail "check --read-data"; }
grep -q "no errors were found" check.log || fail "check said: $(tail -3 check.log)"
restic restore latest --target restored >/dev/null
diff -r tree restored/tree >/dev/null || fail "the restored tree differs"

# A second backup sends only the changes: one new file, one changed.
echo "a new file" > tree/d1/e1/new.txt
head -c 1000 /dev/urandom >> tree/d2/e2/f2.bin
summary=$(restic backup --json tree | grep '"message_type":"summary"')
python3 - "$summary" <<'EOF' || fail "second backup: $summary"
import json, sys
s = json.loads(sys.argv[1])
assert (s["files_new"], s["files_changed"], s["files_unmodified"]) == (1, 1, 2999), s
assert s["data_added"] < 1 << 20, s
EOF
[ "$(restic snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ] \
  || fail "two snapshots expected"
AWS_DEFAULT_REGION=us-east-1 aws --endpoint-url "$endpoint" s3 rb "s3://$bucket" --force >/dev/null
echo "clients: restic ok"
