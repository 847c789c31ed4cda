#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input with cargo fuzz (libFuzzer), each for a bounded time:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 60
#   FUZZ_TARGETS="reference spec" scripts/fuzz.sh 300
#
# Targets (fuzz/fuzz_targets/): reference, spec, bundle (raw .tar.zst bytes), bundle_tar (the
# input is the uncompressed tar, compressed before verify/inspect, so mutations reach the tar
# and JSON layers), seek_table (the trailer `serve` and load's range reads trust), rewrite.
# Not part of the test suite: it is slow.
#
# cargo fuzz needs nightly-only rustc flags (-Zsanitizer=address, sancov passes); only the
# stable toolchain can be had here, so RUSTC_BOOTSTRAP=1 lets stable accept them.
# Installs cargo-fuzz when missing, builds every target once, writes the seed corpora
# (fuzz/seeds/gen_seeds.rs: a small valid bundle made with BundleWriter, its tar, and short
# texts) into fuzz/corpus/<target>/, where what the fuzzer finds accumulates between runs, then
# runs the targets one after another, with fuzz/dicts/<target>.dict (YAML, Kubernetes, spec
# and bundle tokens) where there is one. Each runs with -rss_limit_mb=512 and
# -malloc_limit_mb=256, so unbounded allocation counts as a crash. A crash leaves its input in
# fuzz/artifacts/<target>/; reproduce with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O --debug-assertions TARGET artifacts/TARGET/crash-…
# Exits non-zero when any target crashed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-reference spec bundle bundle_tar seek_table rewrite}"
export RUSTC_BOOTSTRAP=1
flags=(-O --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

echo "== building the fuzz targets"
cargo fuzz build "${flags[@]}" || exit 1
triple="$(rustc -vV | sed -n 's/^host: //p')"
"target/$triple/release/gen_seeds" corpus || exit 1

mkdir -p logs
summary=()
crashed=0
for t in $targets; do
    echo "== fuzzing $t for ${seconds}s"
    mkdir -p "corpus/$t" "artifacts/$t"
    log="logs/$t.log"
    dict=()
    [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
    start=$(date +%s)
    cargo fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=30 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # libFuzzer's own count of seconds spent fuzzing (the wall time includes any rebuild).
    fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        result="no crash"
    else
        crashed=1
        kind=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+|panicked at [^:]*' "$log" || true)
        result="CRASH (exit $rc${kind:+: $kind})${artifact:+, input in $artifact}"
        tail -40 "$log"
    fi
    line="$(printf '%-11s %6ss fuzzing (%ss wall) %12s execs  %s' "$t" "${fuzzed:-?}" "$elapsed" \
        "${execs:-?}" "$result")"
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
exit "$crashed"
