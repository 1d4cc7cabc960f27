#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 15) on the nightly toolchain,
# starting from the committed seed corpus; new inputs go to a scratch
# directory so the committed corpus stays as it is. Fails on any crash and
# prints, per target, executions per second and the coverage reached.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-15}"
cargo +nightly fuzz build
summary=""
for target in $(cargo +nightly fuzz list); do
    scratch=$(mktemp -d)
    log="$scratch/log"
    if ! cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz target $target crashed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
    summary+=$(printf '%-22s %10s runs %8s exec/s  cov %5s  ft %5s  %ss clean' \
        "$target" "$runs" "$((runs / secs))" "$cov" "$ft" "$secs")$'\n'
    rm -rf "$scratch"
done
printf '\nfuzz summary\n%s' "$summary"
