#!/usr/bin/env bash
# Regenerates include/snapc.h from the crate's source with cbindgen (the
# version CI installs: .ci/run). `--check` fails instead of writing when the
# checked-in header differs.
set -euo pipefail
cd "$(dirname "$0")"
out=include/snapc.h
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config cbindgen.toml --crate snapc-c --output "$tmp" .
if [ "${1:-}" = "--check" ]; then
    if ! diff -u "$out" "$tmp"; then
        echo "adapters/c/$out is out of date: run adapters/c/gen-header.sh and commit it" >&2
        exit 1
    fi
    echo "adapters/c/$out is up to date"
else
    mkdir -p include
    cp "$tmp" "$out"
fi
