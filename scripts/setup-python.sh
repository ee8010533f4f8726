#!/usr/bin/env bash
# Creates (once) the project's own Python venv holding the local S3 server (moto) and the
# independent Parquet readers (pyarrow, DuckDB) the tests use. Prints the venv's python path.
# The venv is cached outside the checkout, keyed by the requirements file's hash.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
req="$here/python-requirements.txt"
hash="$(sha256sum "$req" | cut -c1-12)"
cache="${DDB_LAKE_CACHE:-$HOME/.cache/ddb-lake}"
venv="$cache/venv-$hash"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
