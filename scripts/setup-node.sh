#!/usr/bin/env bash
# Installs (once) kinesis-mock, the local Kinesis Data Streams server (npm kinesis-local), into a
# cache outside the checkout. Prints the package folder (holding main.js and server.json).
set -euo pipefail
version=0.6.2
cache="${DDB_LAKE_CACHE:-$HOME/.cache/ddb-lake}/kinesis-local-$version"
if [ ! -f "$cache/.complete" ]; then
  rm -rf "$cache"
  mkdir -p "$cache"
  (cd "$cache" && npm install --no-save --no-audit --no-fund --silent "kinesis-local@$version" >&2)
  touch "$cache/.complete"
fi
echo "$cache/node_modules/kinesis-local"
