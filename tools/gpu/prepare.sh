#!/usr/bin/env bash
# Makes .gpukit/ (git-ignored), everything tools/gpu/check.sh needs on the GPU machine beside the
# repository, which has no Qt, no Debian packages and no network:
#
#   bin/        ladder and test_gpu, built here against the same torch 2.11.0 (CUDA 13) the GPU machine's
#               python3 has, stripped (about 3 MB and 1.3 MB)
#   lib/        the shared libraries they need that are neither glibc's nor torch's (SentencePiece,
#               protobuf-lite, SQLite)
#   ctest/      the gpu tests' CTestTestfile, paths replaced by @KIT@ / @ROOT@ (check.sh fills them in)
#   fixtures/   t5-synthetic-hf from the shared fixtures (HF transformers' outputs)
#   demo/       the built-in demo: the backbone with its weights in bf16 (half the bytes; both runs of a
#               comparison load the same values) and the supersense task
#   deps/       headers and libraries from Debian packages (apt-get download + dpkg -x) so that check.sh
#               can build the core, the CLI and the gpu tests there if the shipped binaries do not load;
#               deps/gloo/include: the gloo headers this build compiled core/dist/GlooBackend.cpp with (the
#               torch wheel has none), deps/nccl/include: the wheel's NCCL header (for ProcessGroupNCCL.hpp)
#   manifest.json  commit, build folder, torch version, sizes
#
#   bash tools/gpu/prepare.sh [--build-dir DIR] [--no-deps] [--no-demo]
#
# --no-demo leaves the demo out (the trainer test and the bf16 demo runs then skip, saying why).
#
# The build folder defaults to build/test (what `packaging/setup.sh test` builds; it must be a CUDA build).
# Needs the built-in demo (`ladder demo`, about 5 minutes once) and ../shared/fixtures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="$ROOT/.gpukit"
BUILD="$ROOT/build/test"
WITH_DEPS=1
WITH_DEMO=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build-dir) BUILD="$(cd "$2" && pwd)"; shift ;;
        --no-deps) WITH_DEPS=0 ;;
        --no-demo) WITH_DEMO=0 ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "prepare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { printf '[prepare] %s\n' "$*"; }
die() { printf '[prepare] error: %s\n' "$*" >&2; exit 1; }

[[ -f "$BUILD/CMakeCache.txt" ]] || die "$BUILD is not a configured build folder (run: bash packaging/setup.sh test)"
VENV="$(sed -n 's/^LADDER_VENV:PATH=//p' "$BUILD/CMakeCache.txt")"
FIXTURES="$(sed -n 's/^LADDER_FIXTURES_DIR:PATH=//p' "$BUILD/CMakeCache.txt")"
[[ -d "$FIXTURES/t5-synthetic-hf" ]] || die "no shared fixtures at $FIXTURES (lay ../shared beside the clone)"

log "building ladder and test_gpu in $BUILD"
cmake --build "$BUILD" --target ladder test_gpu >/dev/null
version="$("$BUILD/bin/ladder" --version)"
[[ "$version" != *"CUDA none"* ]] ||
    die "$BUILD is not a CUDA build ($version): the kit's binaries must have the CUDA paths (CUDA toolkit in /usr/local/cuda)"

rm -rf "$KIT"
mkdir -p "$KIT"/{bin,lib,ctest,fixtures,demo}

# ---- binaries -------------------------------------------------------------------------------------
strip --strip-unneeded -o "$KIT/bin/ladder" "$BUILD/bin/ladder"
strip --strip-unneeded -o "$KIT/bin/test_gpu" "$BUILD/tests/test_gpu"
# SentencePiece's module (core/model/SentencePieceApi.h): the programs load it from their own folder.
strip --strip-unneeded -o "$KIT/bin/libladder_spm.so" "$BUILD/bin/libladder_spm.so"
glibc="$(objdump -T "$KIT/bin/ladder" "$KIT/bin/test_gpu" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
glibcxx="$(objdump -T "$KIT/bin/ladder" "$KIT/bin/test_gpu" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)"
log "binaries need $glibc and $glibcxx at most"

# Shared libraries that are neither torch's (the GPU machine's python3 has the same torch) nor the C/C++
# runtime's (glibc, libgcc, libstdc++: that machine's own are at least as new): copied, so that nothing
# from Debian is needed there.
ldd "$KIT/bin/ladder" "$KIT/bin/test_gpu" "$KIT/bin/libladder_spm.so" | awk '/=> \// { print $3 }' | sort -u | while read -r lib; do
    case "$lib" in
        */torch/lib/*|*/nvidia/*|/usr/local/cuda*) continue ;;
    esac
    case "$(basename "$lib")" in # glibc's, libgcc's and libstdc++'s
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libutil.so*|libresolv.so*|libanl.so*) continue ;;
        ld-linux*|libgcc_s.so*|libstdc++.so*) continue ;;
    esac
    cp -L "$lib" "$KIT/lib/"
done
log "carried libraries: $(cd "$KIT/lib" && ls | tr '\n' ' ')"

# ---- the gpu tests' CTest file --------------------------------------------------------------------
python3 - "$BUILD" "$ROOT" "$FIXTURES" "$KIT/ctest/CTestTestfile.cmake.in" <<'PY'
import re, sys
build, root, fixtures, out = sys.argv[1:]
text = open(f"{build}/tests/CTestTestfile.cmake").read()
# CMake writes each test as an add_test line and a set_tests_properties line; names may be [=[bracketed]=].
lines = text.splitlines(keepends=True)
keep = [lines[i] + lines[i + 1] for i in range(len(lines) - 1)
        if lines[i].startswith("add_test(") and lines[i + 1].startswith("set_tests_properties(")
        and 'LABELS "gpu"' in lines[i + 1]]
if not keep:
    sys.exit(f"{build}/tests/CTestTestfile.cmake: no test labelled gpu")
body = "".join(keep)
body = re.sub(r' _BACKTRACE_TRIPLES "[^"]*"', "", body)
for old, new in ((f"{build}/tests/test_gpu", "@KIT@/bin/test_gpu"), (f"{build}/bin", "@KIT@/bin"),
                 (fixtures, "@KIT@/fixtures"), (root, "@ROOT@")):
    body = body.replace(old, new)
open(out, "w").write("# The gpu tests of tests/CMakeLists.txt, made by tools/gpu/prepare.sh\n" + body)
print(f"[prepare] {len(keep)} gpu tests in the kit's CTest file")
PY

# ---- fixtures and the demo ------------------------------------------------------------------------
cp -r "$FIXTURES/t5-synthetic-hf" "$KIT/fixtures/"
if [[ "$WITH_DEMO" == 1 ]]; then
    DEMO="${LADDER_DEMO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ladderbench/demo-v2}"
    if [[ ! -f "$DEMO/backbone/config.json" ]]; then
        log "no built-in demo at $DEMO: building it (ladder demo, about 5 minutes on 2 cores, once)"
        "$BUILD/bin/ladder" demo >/dev/null
    fi
    mkdir -p "$KIT/demo/backbone" "$KIT/demo/tasks"
    for f in "$DEMO"/backbone/*; do
        [[ "$(basename "$f")" == model.safetensors ]] || cp -r "$f" "$KIT/demo/backbone/"
    done
    cp -r "$DEMO/tasks/supersense" "$KIT/demo/tasks/"
    "$VENV/bin/python" "$ROOT/tools/gpu/to_bf16.py" "$DEMO/backbone/model.safetensors" \
        "$KIT/demo/backbone/model.safetensors"
fi

# ---- Debian headers and libraries for a build on the GPU machine ----------------------------------
if [[ "$WITH_DEPS" == 1 ]]; then
    debs="$(mktemp -d)"
    chmod 777 "$debs" # apt-get download drops to the _apt user
    (cd "$debs" && apt-get download -q libsentencepiece-dev libsentencepiece0 libprotobuf-lite32 libsqlite3-dev \
        libsqlite3-0 libssl-dev libssl3 nlohmann-json3-dev libcli11-dev libgtest-dev >/dev/null) ||
        die "apt-get download failed (run 'apt-get update' first?)"
    mkdir -p "$KIT/deps"
    for d in "$debs"/*.deb; do dpkg -x "$d" "$KIT/deps"; done
    rm -rf "$debs" "$KIT/deps/usr/share/doc" "$KIT/deps/usr/share/man" "$KIT/deps/usr/share/lintian"
    # The build links the shared libraries: static archives (libcrypto.a alone is 9 MB) and OpenSSL's
    # run-time modules would only crowd the 64 MiB upload. GoogleTest is static only: its archives stay.
    find "$KIT/deps" -name '*.a' ! -name 'libgtest*.a' -delete
    rm -rf "$KIT/deps/usr/lib/x86_64-linux-gnu/ossl-modules" "$KIT/deps/usr/lib/x86_64-linux-gnu/engines-3"
    # c10d's ProcessGroupGloo.hpp needs gloo's headers, which neither the torch wheel nor the GPU machine
    # has: the ones this build used (LADDER_GLOO_INCLUDE_DIR, Debian's libgloo-dev), about 0.4 MB.
    gloo="$(sed -n 's/^LADDER_GLOO_INCLUDE_DIR:PATH=//p' "$BUILD/CMakeCache.txt")"
    [[ -f "$gloo/gloo/algorithm.h" ]] || die "no gloo headers at '$gloo' (LADDER_GLOO_INCLUDE_DIR of $BUILD)"
    mkdir -p "$KIT/deps/gloo/include"
    cp -r "$gloo/gloo" "$KIT/deps/gloo/include/"
    # ProcessGroupNCCL.hpp includes <nccl.h>: this build took the CUDA toolkit's, which a toolkit need not
    # have; the wheel's own (nvidia-nccl), for check.sh to use where that machine has no other.
    nccl="$(ls "$VENV"/lib/python3*/site-packages/nvidia/nccl/include/nccl.h 2>/dev/null | head -1)"
    [[ -n "$nccl" ]] || die "no nccl.h in $VENV's nvidia-nccl package"
    mkdir -p "$KIT/deps/nccl/include"
    cp "$nccl" "$KIT/deps/nccl/include/"
    log "deps: $(du -sh "$KIT/deps" | cut -f1) of Debian headers and libraries"
fi

python3 - "$KIT" "$ROOT" "$BUILD" "$VENV" "$glibc" "$glibcxx" <<'PY'
import json, os, subprocess, sys, datetime
kit, root, build, venv, glibc, glibcxx = sys.argv[1:]
torch = subprocess.run([f"{venv}/bin/python", "-c", "import torch,sys; sys.stdout.write(torch.__version__)"],
                       capture_output=True, text=True).stdout
commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                       text=True).stdout.strip() != ""
size = lambda p: sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(p) for f in fs)
m = {"commit": commit + ("+dirty" if dirty else ""), "built_in": build, "root": root, "torch": torch,
     "needs": [glibc, glibcxx], "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
     "bytes": {d: size(os.path.join(kit, d)) for d in sorted(os.listdir(kit)) if os.path.isdir(os.path.join(kit, d))}}
json.dump(m, open(f"{kit}/manifest.json", "w"), indent=1)
print("[prepare] sizes (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in m["bytes"].items())
      + f"; total {sum(m['bytes'].values()) / 1e6:.1f} (the device tool carries at most 64 MiB with the tree)")
PY
log "done: carry .gpukit with tools/gpu/check.sh (docs/GPU.md says how)"
