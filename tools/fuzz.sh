#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS] [TARGET...]: builds the libFuzzer targets of tests/fuzz with clang, AddressSanitizer
# and UBSan (build/fuzz), then runs each for SECONDS (default 600) on a working copy of its committed corpus
# (tests/fuzz/corpus/TARGET; new inputs go to build/fuzz/corpus/TARGET). A crash, a leak, an input slower than
# 2 s or an allocation above 1 GiB stops that target and leaves the input in build/fuzz/artifacts/TARGET/.
# Prints one line per target (executions, executions per second, coverage, result) and writes them to
# build/fuzz/results.json; exits 1 when any target found something. docs/RELIABILITY.md has the figures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-600}"
[[ $# -gt 0 ]] && shift
BUILD="${LADDER_FUZZ_BUILD:-$ROOT/build/fuzz}"
log() { echo "[fuzz] $*"; }
die() { echo "[fuzz] error: $*" >&2; exit 2; }

command -v clang++ >/dev/null || die "no clang++ (Debian: apt-get install clang libclang-rt-14-dev)"
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || die "SECONDS: expected a whole number, got '$SECONDS_EACH'"

t0=$(date +%s)
cmake -S "$ROOT/tests/fuzz" -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" >"$BUILD.configure.log" 2>&1 ||
    { tail -30 "$BUILD.configure.log"; die "configure failed"; }
cmake --build "$BUILD" >"$BUILD.build.log" 2>&1 || { grep -E "error|Error" "$BUILD.build.log" | head -30; die "build failed"; }
log "built in $(($(date +%s) - t0)) s ($BUILD)"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    for src in "$ROOT"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# Leaks are checked after every input (libFuzzer's -detect_leaks); tests/fuzz/lsan.supp names the ones
# outside LadderBench that are left alone, and why.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0}"
results="${LADDER_FUZZ_RESULTS:-$BUILD/results.json}"
echo "[" >"$results"
failed=0
first=1
for t in "${targets[@]}"; do
    exe="$BUILD/$t"
    [[ -x "$exe" ]] || die "no target $t (expected one of tests/fuzz/fuzz_*.cpp)"
    seeds="$ROOT/tests/fuzz/corpus/$t"
    work="$BUILD/corpus/$t"
    art="$BUILD/artifacts/$t"
    mkdir -p "$work" "$art"
    logf="$BUILD/$t.log"
    rc=0
    "$exe" -max_total_time="$SECONDS_EACH" -timeout=2 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -artifact_prefix="$art/" -print_final_stats=1 "$work" "$seeds" >"$logf" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logf" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$logf" | tail -1 | cut -d' ' -f2)"
    corpus="$(ls "$work" | wc -l)"
    if [[ $rc -eq 0 ]]; then
        result="ok"
    else
        failed=1
        result="$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-zA-Z-]+|runtime error: .*|out-of-memory \(malloc\([0-9]+\)\)|timeout after [0-9]+ seconds|deadly signal' "$logf" || echo "exit $rc")"
        result="$result; input in $(ls -t "$art" | head -1 | sed "s|^|$art/|")"
    fi
    printf '[fuzz] %-18s %4s s  %10s executions  %7s/s  cov %5s  corpus %5s  %s\n' "$t" "$SECONDS_EACH" \
        "${execs:-0}" "${rate:-0}" "${cov:-0}" "$corpus" "$result"
    [[ $first == 1 ]] || echo "," >>"$results"
    first=0
    printf '{"target": "%s", "seconds": %s, "executions": %s, "per_second": %s, "coverage": %s, "corpus": %s, "result": "%s"}' \
        "$t" "$SECONDS_EACH" "${execs:-0}" "${rate:-0}" "${cov:-0}" "$corpus" "${result//\"/\'}" >>"$results"
done
echo "]" >>"$results"
log "results: $results; logs: $BUILD/TARGET.log"
exit "$failed"
