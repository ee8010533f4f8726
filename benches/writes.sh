#!/usr/bin/env bash
# Concurrent writes of small files to S3 (docs/BENCHMARKS.md, "Concurrent writes").
# usage: benches/writes.sh [RECORDS] [RTT_MS]      (default 4,000 records, 20 ms round trip)
# Starts moto's S3 server on loopback (as scripts/test.sh does) and times `ddb-lake export` of
# one partition per order (about one file per two records) with --concurrent-writes 1 and 16,
# straight to the server and through a proxy that adds the round trip to every request.
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-4000}"
rtt="${2:-20}"
PY="$(scripts/setup-python.sh)"
cargo build --release --locked
work="target/writes-bench"
rm -rf "$work" && mkdir -p "$work"
port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$PY" -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then break; fi
  sleep 0.2 # waiting for an external server to come up
done
export AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
"$PY" benches/writes.py --records "$records" --rtt-ms "$rtt" --s3-port "$port" --work "$work" --doc docs/BENCHMARKS.md
