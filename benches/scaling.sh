#!/usr/bin/env bash
# How ddb-lake's time and memory grow with the input and with open partitions (docs/BENCHMARKS.md).
# usage: benches/scaling.sh [--sizes 100000,1000000,5000000] [--partitions 1,100,10000]
# Builds ddb-lake in release mode, generates the inputs once (5M records: about 6 GB of disk),
# runs each export as its own process and writes the tables into docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
python3 benches/scaling.py --doc docs/BENCHMARKS.md "$@"
