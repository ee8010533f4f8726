#!/usr/bin/env bash
# Snapshot cost (docs/BENCHMARKS.md): 1M items with 5M changes over 24 hours, from scratch and one
# more hour incrementally, time and peak RSS; DuckDB's latest-state query on the same lake.
# usage: benches/snapshot.sh [--items N] [--changes N] [--hours N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
PY="$(scripts/setup-python.sh)"
"$PY" benches/snapshot.py --doc docs/BENCHMARKS.md "$@"
