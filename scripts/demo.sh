#!/usr/bin/env bash
# ssecfs demo: a local S3 server over HTTPS, a fresh bucket and key, a mount, ordinary tools.
#
#   make demo                      run the whole demo and clean up (exit 0 on success)
#   DEMO_KEEP=1 make demo          leave the server and the mount up to try things by hand
#   make demo-stop                 unmount and stop what DEMO_KEEP=1 left running
#   DEMO_SERVER=seaweedfs make demo   use SeaweedFS instead of Ceph RGW
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
SSECFS=$ROOT/.venv/bin/ssecfs
STATE=$ROOT/.state/demo
SERVER=${DEMO_SERVER:-rgw}
MNT=$STATE/mnt
KEY=$STATE/sse-c.key
BUCKET=demo-$(date +%s)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [[ ${1:-} == stop ]]; then
    mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT" || true
    [[ -d $STATE/server ]] && "$PY" -m tests.servers stop "$STATE/server" || true
    exit 0
fi

mkdir -p "$STATE" "$MNT"
mountpoint -q "$MNT" && fusermount3 -u "$MNT"

say "starting a local $SERVER S3 server over HTTPS (127.0.0.1 only)"
info=$("$PY" -m tests.servers start "$SERVER" "$STATE/server")
get() { sed -n "s/^$1=//p" <<<"$info"; }
ENDPOINT=$(get endpoint) CA=$(get ca_bundle)
export AWS_ACCESS_KEY_ID=$(get access_key) AWS_SECRET_ACCESS_KEY=$(get secret_key)
export AWS_DEFAULT_REGION=us-east-1
echo "endpoint $ENDPOINT, CA $CA"

cleanup() {
    if [[ -z ${DEMO_KEEP:-} ]]; then
        mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT" || true
        "$PY" -m tests.servers stop "$STATE/server" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

say "a fresh bucket and a fresh SSE-C key"
"$PY" -c "
import sys, boto3
from botocore.config import Config
c = boto3.client('s3', endpoint_url='$ENDPOINT', verify='$CA', config=Config(s3={'addressing_style': 'path'}))
c.create_bucket(Bucket='$BUCKET')
print('created bucket $BUCKET')"
rm -f "$KEY"
run "$SSECFS" keygen "$KEY"
run "$SSECFS" key-md5 "$KEY"

say "uploading one object the way aws-cli --sse-c does (boto3 with SSECustomerKey)"
"$PY" -c "
import boto3
from botocore.config import Config
c = boto3.client('s3', endpoint_url='$ENDPOINT', verify='$CA',
                 config=Config(s3={'addressing_style': 'path'}, request_checksum_calculation='when_required'))
key = open('$KEY', 'rb').read()
c.put_object(Bucket='$BUCKET', Key='reports/2026/summary.txt', Body=b'uploaded with aws-cli style SSE-C\n',
             SSECustomerAlgorithm='AES256', SSECustomerKey=key)
print('put s3://$BUCKET/reports/2026/summary.txt')"

say "mounting it (returns once the filesystem answers)"
run "$SSECFS" mount "$BUCKET" "$MNT" --key-file "$KEY" --endpoint-url "$ENDPOINT" --ca-bundle "$CA"

say "ordinary tools through the mount"
run cat "$MNT/reports/2026/summary.txt"
echo "hello from ssecfs" > "$MNT/hello.txt"; echo "\$ echo 'hello from ssecfs' > $MNT/hello.txt"
run mkdir -p "$MNT/photos"
run dd if=/dev/urandom of="$MNT/photos/big.bin" bs=1M count=24 status=none
run cp -r "$ROOT/docs" "$MNT/docs"
run ls -lR "$MNT"
run md5sum "$MNT/photos/big.bin"
run mv "$MNT/hello.txt" "$MNT/greeting.txt"
run chmod 600 "$MNT/greeting.txt"
run cat "$MNT/greeting.txt"

say "the stored objects are SSE-C encrypted: without the key the server refuses them"
"$PY" -c "
import boto3, botocore
from botocore.config import Config
c = boto3.client('s3', endpoint_url='$ENDPOINT', verify='$CA', config=Config(s3={'addressing_style': 'path'}))
try:
    c.get_object(Bucket='$BUCKET', Key='greeting.txt')
    raise SystemExit('UNEXPECTED: the object was readable without the key')
except botocore.exceptions.ClientError as e:
    print('GET without the key ->', e.response['ResponseMetadata']['HTTPStatusCode'], e.response['Error']['Code'])
key = open('$KEY', 'rb').read()
r = c.get_object(Bucket='$BUCKET', Key='greeting.txt', SSECustomerAlgorithm='AES256', SSECustomerKey=key)
print('GET with the key    ->', r['Body'].read().decode().strip(), '| metadata', r['Metadata'])"

if [[ -n ${DEMO_KEEP:-} ]]; then
    say "left running for you"
    cat <<EOT
mount:    $MNT   (bucket $BUCKET, key $KEY)
server:   $ENDPOINT  (CA $CA)
env:      export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
remount:  $SSECFS mount $BUCKET $MNT --key-file $KEY --endpoint-url $ENDPOINT --ca-bundle $CA
stop all: make demo-stop
EOT
    exit 0
fi

say "unmounting (uploads anything unsaved first) and stopping the server"
run fusermount3 -u "$MNT"
for _ in $(seq 1 100); do mountpoint -q "$MNT" || break; sleep 0.1; done
echo "demo finished: all good"
