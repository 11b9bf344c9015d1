#!/usr/bin/env bash
# The store's S3 endpoint driven by the command-line clients people use:
# the AWS CLI, rclone and s3cmd. Each uploads and downloads a 200 MiB file
# in multiple parts, syncs a tree of 1,000 small files and checks what came
# back, byte for byte.
#
# Usage: tests/s3/clients.sh ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY WORKDIR [CLIENT...]
# (clients: aws rclone s3cmd; all by default)
set -euo pipefail
endpoint=$1 key=$2 secret=$3 work=$4
shift 4
clients=${*:-aws rclone s3cmd}
want() { case " $clients " in *" $1 "*) return 0 ;; esac; return 1; }
host=${endpoint#http://}
mkdir -p "$work"
cd "$work"

export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$work/no-config AWS_SHARED_CREDENTIALS_FILE=$work/no-credentials
aws() { command aws --endpoint-url "$endpoint" "$@"; }

fail() { echo "clients: FAILED: $*" >&2; exit 1; }

# Test data: one 200 MiB file and a tree of 1,000 small files.
head -c $((200 << 20)) /dev/urandom > big.bin
big_sha=$(sha256sum < big.bin | cut -d' ' -f1)
mkdir -p tree
for i in $(seq 0 999); do
  d=tree/d$((i % 10))
  mkdir -p "$d"
  printf 'file %d %s\n' "$i" "$(head -c 24 /dev/urandom | base64)" > "$d/f$i.txt"
done

same_tree() { diff -r "$1" "$2" >/dev/null || fail "trees $1 and $2 differ"; }
same_big() { [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$big_sha" ] || fail "$1 differs from big.bin"; }

# --- the AWS CLI -----------------------------------------------------------
if want aws; then
aws s3 mb s3://awscli >/dev/null
aws s3 cp big.bin s3://awscli/big.bin --only-show-errors
etag=$(aws s3api head-object --bucket awscli --key big.bin --query ETag --output text)
case $etag in *-*) ;; *) fail "aws s3 cp of 200 MiB was not multipart (ETag $etag)" ;; esac
aws s3 cp s3://awscli/big.bin big.aws --only-show-errors
same_big big.aws
aws s3api get-object --bucket awscli --key big.bin --range bytes=1000-1999 range.part >/dev/null
cmp -s range.part <(tail -c +1001 big.bin | head -c 1000) || fail "aws s3api range"
aws s3 sync tree s3://awscli/tree --only-show-errors
[ "$(aws s3 ls --recursive s3://awscli/tree/ | wc -l)" = 1000 ] || fail "aws s3 ls after sync"
aws s3 sync s3://awscli/tree tree.aws --only-show-errors
same_tree tree tree.aws
# A second sync has nothing to do.
[ -z "$(aws s3 sync tree s3://awscli/tree --dryrun)" ] || fail "aws s3 sync is not idempotent"
aws s3 rm s3://awscli --recursive --only-show-errors
aws s3 rb s3://awscli >/dev/null
echo "clients: aws cli ok"
fi

# --- rclone ------------------------------------------------------------------
if want rclone; then
cat > rclone.conf <<EOF
[store]
type = s3
provider = Other
access_key_id = $key
secret_access_key = $secret
endpoint = $endpoint
region = us-east-1
force_path_style = true
EOF
# rclone's AWS SDK cannot use AWS_CA_BUNDLE with its own transport (and
# this endpoint is plain HTTP anyway).
rc() { env -u AWS_CA_BUNDLE rclone --config rclone.conf "$@"; }
rc mkdir store:rclone
rc copyto big.bin store:rclone/big.bin --s3-upload-cutoff 5M --s3-chunk-size 5M
rc copyto store:rclone/big.bin big.rclone
same_big big.rclone
rc sync tree store:rclone/tree --transfers 8
rc check tree store:rclone/tree --one-way
rc sync store:rclone/tree tree.rclone
same_tree tree tree.rclone
rc purge store:rclone
echo "clients: rclone ok"
fi

# --- s3cmd -------------------------------------------------------------------
if want s3cmd; then
# At its defaults: only the endpoint and the keys. It signs for region US
# first and is told us-east-1 (AuthorizationHeaderMalformed), as S3 does.
cat > s3cfg <<EOF
[default]
access_key = $key
secret_key = $secret
host_base = $host
host_bucket = $host
use_https = False
EOF
s3c() { s3cmd -c s3cfg --no-progress "$@"; }
s3c mb s3://s3cmd >/dev/null
s3c put big.bin s3://s3cmd/big.bin --multipart-chunk-size-mb=15 >/dev/null
s3c get s3://s3cmd/big.bin big.s3cmd >/dev/null
same_big big.s3cmd
s3c sync tree/ s3://s3cmd/tree/ >/dev/null
[ "$(s3c ls --recursive s3://s3cmd/tree/ | wc -l)" = 1000 ] || fail "s3cmd ls after sync"
mkdir tree.s3cmd
s3c sync s3://s3cmd/tree/ tree.s3cmd/ >/dev/null
same_tree tree tree.s3cmd
s3c del --recursive --force s3://s3cmd >/dev/null
s3c rb s3://s3cmd >/dev/null
echo "clients: s3cmd ok"
fi
