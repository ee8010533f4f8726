#!/usr/bin/env bash
# The side-by-side whole-process benchmark (docs/BENCHMARKS.md): ddb-lake against DuckDB, pyarrow
# the way a Lambda transform uses it, and Polars, on the same generated input and machine.
# usage: benches/side_by_side.sh [RECORDS]     (default 1,000,000 records, about 1.2 GB)
# Installs the peers into their own venv (cached under ~/.cache/ddb-lake), builds ddb-lake in
# release mode, runs every tool and the parse-only floor, prints the table and writes it into
# docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DDB_LAKE_CACHE:-$HOME/.cache/ddb-lake}"
venv="$cache/bench-venv-1"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    duckdb==2.0.0 pyarrow==26.0.1 polars==1.44.2 boto3==1.44.5
  touch "$venv/.complete"
fi
cargo build --release --locked
# The parse-only floor (benches/floor.rs): the same input merely read and parsed as JSON.
floor="$(cargo bench --locked --bench floor --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "floor" and m.get("executable")][-1])')"
"$venv/bin/python" benches/side_by_side.py --records "${1:-1000000}" --threads "$(nproc)" \
  --floor "$floor" --doc docs/BENCHMARKS.md
