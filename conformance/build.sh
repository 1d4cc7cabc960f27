#!/usr/bin/env bash
# Build the Open MPI reference encoder (needs Debian's libopenmpi-dev).
# Usage: conformance/build.sh [OUTPUT]   (default: target/ompi_vectors)
set -euo pipefail

out="${1:-target/ompi_vectors}"
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2046  # pkg-config's flags must split into words
cc -O1 -Wall -Wextra -o "$out" "$(dirname "$0")/ompi_vectors.c" \
    $(pkg-config --cflags --libs orte) -lopen-pal
