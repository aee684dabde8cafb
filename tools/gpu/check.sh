#!/usr/bin/env bash
# The GPU kit: ONE prepared script that measures LadderBench on a GPU machine (docs/GPU.md).
#
#   bash tools/gpu/check.sh [--out DIR] [--budget SECONDS] [--only STEP ...] [--dry-run]
#
# On the GPU machine (one H200; python3 with torch 2.11 cu130, transformers, peft; no Qt, no network), with
# .gpukit/ carried beside the tree (made here by tools/gpu/prepare.sh):
#   1. sets up the kit's binaries (.gpukit/bin) against that python's torch; if they do not load there, builds
#      the core, the CLI and the gpu tests there from the tree and .gpukit/deps (LADDER_BUILD_GUI=OFF)
#   2. runs tools/gpu/kit.py: ctest -L gpu, the paper's Table 1 shape per method and dtype, HF + PEFT
#      side by side, the demo task in fp32 and bf16; each step skipped when the budget cannot fit it
#   3. writes DIR/gpu-kit.json, DIR/gpu-kit.log, DIR/gpu-tests.log and DIR/check.log
#      (DIR: --out, else $OUT as the device tool sets it, else ./gpu-out)
#
# --dry-run runs the same steps here on the CPU with tiny shapes (the kit's test before any GPU time).
# --budget: seconds for the measurements (default 480; the whole script must end inside 9 minutes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="$ROOT/.gpukit"
OUTDIR="${OUT:-$PWD/gpu-out}"
DRY=0
BUDGET=480
ONLY=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUTDIR="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        --only) shift; while [[ $# -gt 0 && "$1" != --* ]]; do ONLY+=("$1"); shift; done; continue ;;
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUTDIR"
exec > >(tee -a "$OUTDIR/check.log") 2>&1
START=$(date +%s)
log() { printf '[check %4ds] %s\n' "$(($(date +%s) - START))" "$*"; }
die() { log "error: $*"; exit 1; }

[[ -f "$KIT/manifest.json" ]] || die "no $KIT/manifest.json: run 'bash tools/gpu/prepare.sh' on the build machine first"
log "kit $(tr -d '\n ' < "$KIT/manifest.json" | head -c 300)"

# ---- the python with torch -------------------------------------------------------------------------
if [[ "$DRY" == 1 ]]; then
    PY="${LADDER_KIT_PYTHON:-$(sed -n 's/^LADDER_VENV:PATH=//p' "$ROOT/build/test/CMakeCache.txt" 2>/dev/null)/bin/python}"
    [[ -x "$PY" ]] || PY=/opt/ladderbench/venv/bin/python
    # HF + PEFT for the dry run's comparison: into the same venv, once.
    "$PY" -c 'import transformers, peft' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check transformers peft
else
    PY="${LADDER_KIT_PYTHON:-python3}"
fi
"$PY" -c 'import torch' || die "$PY cannot import torch"
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
NVIDIA_LIBS="$("$PY" - <<'PY'
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
print(":".join(sorted(set(os.path.dirname(p) for p in glob.glob(f"{site}/nvidia/**/lib*.so*", recursive=True)))))
PY
)"
# The kit's libraries only where this machine has none of that name: its own (say a newer SQLite, which
# python's sqlite3 module was built against) stay in charge.
mkdir -p "$KIT/run/lib"
for lib in "$KIT"/lib/*; do
    name="$(basename "$lib")"
    if ldconfig -p 2>/dev/null | awk '{ print $1 }' | grep -qxF "$name"; then
        rm -f "$KIT/run/lib/$name"
    else
        cp -f "$lib" "$KIT/run/lib/"
    fi
done
log "kit libraries used: $(ls "$KIT/run/lib" | tr '\n' ' ')"
export LD_LIBRARY_PATH="$KIT/run/lib:$TORCH_LIB${NVIDIA_LIBS:+:$NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "python $("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)')"

# ---- the binaries ----------------------------------------------------------------------------------
BIN="$KIT/run/bin"
mkdir -p "$BIN"
cp "$KIT/bin/ladder" "$KIT/bin/test_gpu" "$KIT/bin/libladder_spm.so" "$BIN/"
SOURCE=shipped
if ! "$BIN/ladder" --version >"$OUTDIR/ladder-version.txt" 2>&1; then
    log "the shipped ladder does not start here:"
    sed 's/^/    /' "$OUTDIR/ladder-version.txt"
    ldd "$BIN/ladder" | grep -i 'not found' | sed 's/^/    /' || true
    [[ -d "$KIT/deps" ]] || die "and the kit has no deps/ to build with (prepare.sh --no-deps)"
    log "building the core, the CLI and the gpu tests here (LADDER_BUILD_GUI=OFF, LADDER_TESTS_GPU_ONLY=ON)"
    t=$(date +%s)
    D="$KIT/deps/usr"
    export PKG_CONFIG_PATH="$D/lib/x86_64-linux-gnu/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$KIT/deps"
    # core/dist: gloo's headers (the kit's copy: the wheel has none) and NCCL's, where the CUDA toolkit has
    # none: that python's nvidia-nccl package's, else the kit's copy of the one built with here.
    GLOO_INC="$KIT/deps/gloo/include"
    [[ -f "$GLOO_INC/gloo/algorithm.h" ]] || die "the kit has no gloo headers ($GLOO_INC: prepare.sh makes them)"
    if [[ ! -f /usr/local/cuda/include/nccl.h ]]; then
        NCCL_INC="$("$PY" -c 'import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
print(os.path.dirname((sorted(glob.glob(f"{site}/nvidia/**/include/nccl.h", recursive=True)) or [""])[0]))')"
        [[ -n "$NCCL_INC" ]] || NCCL_INC="$KIT/deps/nccl/include"
        log "nccl.h from $NCCL_INC (none in /usr/local/cuda/include)"
        export CPATH="$NCCL_INC${CPATH:+:$CPATH}"
    fi
    cmake -S "$ROOT" -B "$KIT/build" -G Ninja -DCMAKE_BUILD_TYPE="${LADDER_KIT_BUILD_TYPE:-Release}" \
        -DLADDER_BUILD_GUI=OFF -DLADDER_BUILD_TESTS=ON -DLADDER_TESTS_GPU_ONLY=ON -DLADDER_WITH_CUDA=ON \
        -DLADDER_PYTHON="$(command -v "$PY")" -DCMAKE_PREFIX_PATH="$D" -DLADDER_FIXTURES_DIR="$KIT/fixtures" \
        -DLADDER_GLOO_INCLUDE_DIR="$GLOO_INC" \
        >"$OUTDIR/build.log" 2>&1 || { tail -30 "$OUTDIR/build.log"; die "configure failed"; }
    cmake --build "$KIT/build" --target ladder test_gpu --parallel "$(nproc)" >>"$OUTDIR/build.log" 2>&1 ||
        { tail -30 "$OUTDIR/build.log"; die "build failed"; }
    cp "$KIT/build/bin/ladder" "$KIT/build/bin/libladder_spm.so" "$KIT/build/tests/test_gpu" "$BIN/"
    took=$(($(date +%s) - t))
    SOURCE="built here in $took s"
    BUDGET=$((BUDGET - took > 150 ? BUDGET - took : 150)) # the whole script must still end inside 9 minutes
    "$BIN/ladder" --version >"$OUTDIR/ladder-version.txt" 2>&1 || die "the ladder built here does not start either"
fi
log "binaries: $SOURCE; $(cat "$OUTDIR/ladder-version.txt")"

# The gpu tests' CTest file, with this machine's paths.
mkdir -p "$KIT/run/ctest"
sed -e "s#@KIT@/bin#$BIN#g" -e "s#@KIT@#$KIT#g" -e "s#@ROOT@#$ROOT#g" "$KIT/ctest/CTestTestfile.cmake.in" \
    > "$KIT/run/ctest/CTestTestfile.cmake"
export LADDER_FIXTURES_DIR="$KIT/fixtures" LADDER_DEMO_DIR="$KIT/demo" LADDER_PYTHON="$PY"
export XDG_DATA_HOME="$KIT/run/data" # the default results store of any run that names none
command -v ctest >/dev/null || die "no ctest on PATH (CMake is needed for ctest -L gpu)"

ARGS=(--out "$OUTDIR" --ladder "$BIN/ladder" --ctest-dir "$KIT/run/ctest" --python "$PY" --budget "$BUDGET")
[[ "$DRY" == 1 ]] && ARGS+=(--dry-run)
[[ ${#ONLY[@]} -gt 0 ]] && ARGS+=(--only "${ONLY[@]}")
rc=0
"$PY" "$ROOT/tools/gpu/kit.py" "${ARGS[@]}" || rc=$?
"$PY" - "$OUTDIR/gpu-kit.json" "$SOURCE" <<'PY' || true
import json, sys
p, source = sys.argv[1:]
r = json.load(open(p)); r.setdefault("machine", {})["binaries"] = source
json.dump(r, open(p, "w"), indent=1)
PY
log "finished with status $rc in $(($(date +%s) - START)) s; results in $OUTDIR"
exit "$rc"
