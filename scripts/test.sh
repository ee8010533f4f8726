#!/usr/bin/env bash
# Runs the whole test suite: installs and starts what the tests need (a local S3 server,
# pyarrow and DuckDB in the project's venv), then `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="$(scripts/setup-python.sh)"
export DDB_LAKE_TEST_PYTHON="$PY"

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
"$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$logdir/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  if "$PY" - "$S3_PORT" <<'PYEOF' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
PYEOF
  sleep 0.2 # waiting for an external server to come up, not test synchronization
done
"$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$S3_PORT/moto-api/', timeout=2)" \
  || { echo "moto did not start:"; cat "$logdir/moto.log"; exit 1; }

export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$S3_PORT"
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=test-access-key
export AWS_SECRET_ACCESS_KEY=test-secret-key
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

cargo test --locked "$@"
