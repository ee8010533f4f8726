#!/usr/bin/env bash
# Consumer throughput against the local Kinesis server (docs/BENCHMARKS.md, "Consumer").
# usage: benches/consumer.sh [RECORDS] [SHARDS]      (default 50,000 records on 8 shards)
# Starts kinesis-mock on loopback (as scripts/test.sh does), fills a stream with generated records
# (PutRecords, 500 per call), then times `ddb-lake export --stream` reading the backlog into a
# local folder, and reports how much CPU ddb-lake and the server each used while it did.
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-50000}"
shards="${2:-8}"
PY="$(scripts/setup-python.sh)"
cargo build --release --locked
work="target/consumer-bench"
rm -rf "$work" && mkdir -p "$work"
KINESIS_DIR="$(scripts/setup-npm.sh kinesis-local 0.6.2)"
port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
tls="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls" KINESIS_MOCK_CERT_PATH="$KINESIS_DIR/server.json" \
  CREATE_STREAM_DURATION=50ms SHARD_LIMIT=1000 LOG_LEVEL=WARN node "$KINESIS_DIR/main.js" >"$work/kinesis.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://127.0.0.1:$port/healthcheck" 2>/dev/null; then break; fi
  sleep 0.2 # waiting for an external server to come up
done
export AWS_ENDPOINT_URL_KINESIS="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
"$PY" benches/consumer.py --records "$records" --shards "$shards" --server-pid "$server" --work "$work" --doc docs/BENCHMARKS.md
