#!/usr/bin/env bash
# Usage: scripts/fuzz-all.sh [SECONDS] [TARGET...]
# Runs every cargo-fuzz target (or the TARGETs named) in turn for SECONDS each (default
# 600), one process, and appends one line per run to fuzz/log.tsv: date, target, wall
# seconds, CPU seconds, executions, result.
# The corpus grows in fuzz/corpus/<target>; a crash is copied to fuzz/regressions/<target>/
# (replayed by `cargo test -p sparsewire-pipeline --test fuzz_replay`) and the loop goes on.
# Needs nightly and cargo-fuzz: `cargo +nightly install cargo-fuzz`.
set -u
secs=${1:-600}
shift || true
cd "$(dirname "$0")/../fuzz"
cargo +nightly fuzz build -O >/dev/null 2>&1 || { echo "fuzz build failed" >&2; exit 1; }
log=log.tsv
[ -f "$log" ] || printf 'date\ttarget\twall_s\tcpu_s\texecs\tresult\n' >"$log"
targets=${*:-$(cargo +nightly fuzz list)}
for t in $targets; do
    out=$(mktemp)
    start=$(date +%s)
    cpu=$(mktemp)
    /usr/bin/time -f '%U %S' -o "$cpu" cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 >"$out" 2>&1
    rc=$?
    cpus=$(awk '{printf "%.0f", $1 + $2}' "$cpu"); rm -f "$cpu"
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | grep -o '[0-9]*$' | tail -1)
    result=ok
    if [ $rc -ne 0 ]; then
        result="crash (rc $rc)"
        mkdir -p "regressions/$t"
        cp artifacts/"$t"/crash-* artifacts/"$t"/oom-* artifacts/"$t"/timeout-* "regressions/$t/" 2>/dev/null
        tail -40 "$out" >"regressions/$t/last-crash.log"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$took" "$cpus" "${execs:-?}" "$result" >>"$log"
    echo "$t: ${took}s wall, ${cpus}s CPU, ${execs:-?} executions, $result"
    rm -f "$out"
done
