#!/usr/bin/env bash
# Regenerates include/snapc.h from the crate's source with cbindgen (a pinned
# dev-dependency, run by the test adapters/c/tests/header.rs). `--check` fails
# instead of writing when the checked-in header differs (the same test runs
# with `cargo test --workspace`).
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--check" ]; then
    cargo test --quiet -p snapc-c --test header
else
    SNAPC_WRITE_HEADER=1 cargo test --quiet -p snapc-c --test header
fi
