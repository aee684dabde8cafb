#!/usr/bin/env bash
# tools/asan.sh [LABEL...]: builds the whole tree with AddressSanitizer, LeakSanitizer and UBSan
# (-DLADDER_ASAN=ON, RelWithDebInfo, in build/asan) and runs the CTest labels given (default: unit) there.
# The sanitizers' options reach every test and every `ladder`/`ladderbench` a test starts through CTest's
# environment (LADDER_SANITIZER_ENV, cmake/LadderCompiler.cmake): a report ends the process with exit status
# 86 and is written to build/asan/sanitizer/report.EXE.PID. This script prints each report found there, also
# those of child processes whose stderr a test kept to itself, and exits 1 when a test failed or any report
# was written. docs/RELIABILITY.md "ASan and UBSan" has the result and every suppression (tests/asan/).
#
#   bash tools/asan.sh            the unit suite (about 4 minutes once built; the first build about an hour)
#   bash tools/asan.sh unit gui   the widget tests too (QT_QPA_PLATFORM=offscreen, as CTest sets it)
#
# Environment: LADDER_JOBS (parallel compile and test jobs, default 2), LADDER_VENV (the venv holding the
# torch wheel, default /opt/ladderbench/venv), LADDER_ASAN_BUILD (the build folder, default build/asan).
# The build runs under `nice -n 15`: it shares the cores with other builds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${LADDER_ASAN_BUILD:-$ROOT/build/asan}"
JOBS="${LADDER_JOBS:-2}"
VENV="${LADDER_VENV:-/opt/ladderbench/venv}"
log() { echo "[asan] $*"; }
die() { echo "[asan] error: $*" >&2; exit 2; }

labels=("$@")
[[ ${#labels[@]} -gt 0 ]] || labels=(unit)
for l in "${labels[@]}"; do
    [[ "$l" =~ ^[a-z]+$ ]] || die "LABEL: expected a CTest label such as unit or gui, got '$l'"
done
[[ -x "$VENV/bin/python" ]] || die "no venv at $VENV (bash packaging/setup.sh test makes it)"

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLADDER_ASAN=ON \
    -DLADDER_VENV="$VENV" -DLADDER_PYTHON="$VENV/bin/python" -DLADDER_BUILD_TESTS=ON -DLADDER_BUILD_GUI=ON \
    >"$BUILD.configure.log" 2>&1 || { tail -30 "$BUILD.configure.log"; die "configure failed ($BUILD.configure.log)"; }
t0=$(date +%s)
nice -n 15 cmake --build "$BUILD" --parallel "$JOBS" >"$BUILD.build.log" 2>&1 ||
    { grep -E "error|Error" "$BUILD.build.log" | head -30; die "build failed ($BUILD.build.log)"; }
log "built in $(($(date +%s) - t0)) s ($BUILD; log $BUILD.build.log)"

reports="$BUILD/sanitizer"
rm -rf "$reports"
mkdir -p "$reports"
regex="^($(IFS='|'; echo "${labels[*]}"))\$"
t0=$(date +%s)
rc=0
ctest --test-dir "$BUILD" -L "$regex" -j "$JOBS" --output-on-failure || rc=$?
log "ctest -L '$regex': exit status $rc in $(($(date +%s) - t0)) s"

# A file holding nothing but "WARNING: AddressSanitizer failed to allocate N bytes" is an allocation the
# allocator refused as glibc would (allocator_may_return_null; test_memory asks for 2^50 bytes on purpose):
# listed, not counted. Anything else is a report.
shopt -s nullglob
found=()
for f in "$reports"/report.*; do
    if ! grep -qv 'WARNING: AddressSanitizer failed to allocate 0x[0-9a-f]* bytes' "$f"; then
        log "refused allocation (not a finding): $(basename "$f"): $(head -1 "$f")"
        continue
    fi
    found+=("$f")
    log "---- sanitizer report $f (first 80 lines)"
    head -80 "$f"
done
log "${#found[@]} sanitizer report(s) in $reports"
[[ $rc -eq 0 && ${#found[@]} -eq 0 ]] || exit 1
