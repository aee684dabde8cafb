#!/usr/bin/env bash
# The Debian package, installed (docs/PACKAGING.md): builds ladderbench_<version>_amd64.deb with CPack from a
# built folder, prints `dpkg -c` and its control fields, validates the .desktop file, the AppStream metainfo
# and the man pages inside it, installs it with dpkg -i, hides the build folder and the checkout, and runs
# `ladder info`, `ladderbench --screenshot` and the wrapper's missing-LibTorch message from /usr/bin; then
# dpkg -P (removed and purged: no record left). packaging/setup.sh's test mode runs it after ctest; by hand:
#
#   sudo bash tests/package/test_package.sh [BUILD_DIR]      (default: build/test beside this checkout)
#
# Hiding: in a private mount namespace (unshare -m), an empty tmpfs is mounted over the build folder and the
# checkout, so the installed programs cannot reach either, while other users of the checkout keep theirs.
# Where unshare is refused, or with LADDER_PACKAGE_TEST_HIDE=move, the build folder is moved away instead
# (mv BUILD BUILD.away-PID; a trap moves it back however the script ends).
# Needs root (dpkg -i), cpack, dpkg-deb, desktop-file-validate and appstreamcli: without them it exits 77
# (skipped) with the reason, and with CI=true it fails instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build/test}" && pwd)"
START=$SECONDS
log() { printf '[package] %s\n' "$*"; }
fail() { printf '[package] FAIL: %s\n' "$*" >&2; exit 1; }
skip() {
    if [[ "${CI:-}" == true ]]; then fail "$* (CI=true: the package test must run)"; fi
    printf '[package] SKIPPED: %s\n' "$*"
    exit 77
}

[[ "$(id -u)" -eq 0 ]] || skip "dpkg -i needs root (run: sudo bash $0 $BUILD)"
for tool in cpack dpkg-deb dpkg-shlibdeps desktop-file-validate appstreamcli man file; do
    command -v "$tool" >/dev/null || skip "$tool is missing (packaging/setup.sh installs it)"
done
[[ -x "$BUILD/bin/ladder" && -x "$BUILD/bin/ladderbench" ]] || fail "$BUILD/bin/{ladder,ladderbench} are not built"
if dpkg-query -W -f='${db:Status-Abbrev}' ladderbench 2>/dev/null | grep -q '^ii'; then
    fail "a ladderbench package is installed already ($(dpkg-query -W -f='${Version}' ladderbench)); remove it first (dpkg -r ladderbench)"
fi

WORK="$(mktemp -d /tmp/ladder-package-test.XXXXXX)"
INSTALLED=0
MOVED=""
cleanup() {
    local rc=$?
    if [[ -n "$MOVED" && -e "$MOVED" ]]; then
        rmdir "$BUILD" 2>/dev/null || true # the empty stand-in
        if [[ -e "$BUILD" ]]; then
            log "cannot move $MOVED back: $BUILD is in the way (move it back by hand)"
        else
            mv "$MOVED" "$BUILD" && log "moved $MOVED back to $BUILD"
        fi
    fi
    if [[ "$INSTALLED" == 1 ]]; then
        dpkg -P ladderbench >/dev/null && log "dpkg -P ladderbench: removed and purged"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP # through cleanup: the build folder moves back, the package is removed

# ---- build the package ---------------------------------------------------------------------------
# What the package holds, up to date (cpack itself builds nothing: cmake/LadderPackaging.cmake).
cmake --build "$BUILD" --target ladder ladderbench ladder_spm >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; fail "building ladder, ladderbench and ladder_spm failed"; }
log "cpack -G DEB in $BUILD"
t0=$SECONDS
(cd "$BUILD" && cpack -G DEB -B "$WORK/cpack") >"$WORK/cpack.log" 2>&1 || { cat "$WORK/cpack.log"; fail "cpack failed"; }
grep -i 'warning' "$WORK/cpack.log" | sed 's/^/[package] cpack: /' || true
DEB="$(ls "$WORK"/cpack/ladderbench_*_amd64.deb 2>/dev/null | head -1)"
[[ -f "$DEB" ]] || { cat "$WORK/cpack.log"; fail "cpack wrote no ladderbench_*_amd64.deb"; }
log "$(basename "$DEB"): $(stat -c %s "$DEB") bytes, built in $((SECONDS - t0)) s"

log "dpkg -c $(basename "$DEB"):"
dpkg -c "$DEB"
log "control fields:"
dpkg-deb -f "$DEB" Package Version Architecture Installed-Size Depends Section

depends="$(dpkg-deb -f "$DEB" Depends)"
for want in libqt6widgets6 libqt6gui6 libqt6core6 libsqlite3-0 libsentencepiece0 libc6 libstdc++6 python3-venv wordnet-base; do
    [[ "$depends" == *"$want"* ]] || fail "Depends lacks $want: $depends"
done

# ---- what is inside: validators ------------------------------------------------------------------
dpkg-deb -x "$DEB" "$WORK/root"
contents="$(dpkg -c "$DEB")"
for path in ./usr/bin/ladder ./usr/bin/ladderbench ./usr/lib/ladderbench/ladder ./usr/lib/ladderbench/ladderbench \
    ./usr/lib/ladderbench/libladder_spm.so ./usr/lib/ladderbench/install-torch \
    ./usr/share/applications/io.github.ladderbench.LadderBench.desktop \
    ./usr/share/metainfo/io.github.ladderbench.LadderBench.metainfo.xml \
    ./usr/share/icons/hicolor/scalable/apps/io.github.ladderbench.LadderBench.svg \
    ./usr/share/man/man1/ladder.1.gz ./usr/share/man/man1/ladderbench.1.gz \
    ./usr/share/doc/ladderbench/changelog.gz; do
    grep -q " $path\$" <<<"$contents" || fail "the package lacks $path"
done
for size in 16 32 48 64 128 256; do
    png="$WORK/root/usr/share/icons/hicolor/${size}x${size}/apps/io.github.ladderbench.LadderBench.png"
    file "$png" | grep -q "PNG image data, $size x $size" || fail "$png: not a ${size}x${size} PNG"
done
log "desktop-file-validate io.github.ladderbench.LadderBench.desktop:"
desktop-file-validate "$WORK/root/usr/share/applications/io.github.ladderbench.LadderBench.desktop" ||
    fail "desktop-file-validate refused the .desktop file"
log "  (no output: valid)"
log "appstreamcli validate --no-net io.github.ladderbench.LadderBench.metainfo.xml:"
appstreamcli validate --no-net "$WORK/root/usr/share/metainfo/io.github.ladderbench.LadderBench.metainfo.xml" ||
    fail "appstreamcli refused the metainfo"
for page in ladder ladderbench; do
    gz="$WORK/root/usr/share/man/man1/$page.1.gz"
    warnings="$(LC_ALL=C.UTF-8 MANWIDTH=100 man --warnings -l "$gz" 2>&1 >/dev/null || true)"
    [[ -z "$warnings" ]] || fail "man --warnings $page.1.gz: $warnings"
    log "man page $page.1.gz: $(LC_ALL=C.UTF-8 MANWIDTH=100 man -l "$gz" 2>/dev/null | wc -l) lines, no groff warnings"
done
grep -q '^\.SS ladder runs list' <(zcat "$WORK/root/usr/share/man/man1/ladder.1.gz") ||
    fail "ladder.1 lacks the section of 'ladder runs list'"
for f in "$WORK"/root/usr/lib/ladderbench/{ladder,ladderbench,libladder_spm.so}; do
    file "$f" | grep -q 'stripped' && ! file "$f" | grep -q 'not stripped' || fail "$f is not stripped"
    if readelf -d "$f" | grep -E 'RUNPATH|RPATH' | grep -qE "$ROOT|$BUILD"; then
        fail "$f's RUNPATH points into the checkout: $(readelf -d "$f" | grep -E 'RUNPATH|RPATH')"
    fi
done

if command -v lintian >/dev/null; then # what it says, for the log (docs/PACKAGING.md explains each)
    log "lintian (not a pass/fail check):"
    lintian "$DEB" 2>&1 | grep -v '^running with root' | sed 's/^/[package]   /' || true
fi

# ---- install, hide the build, run ----------------------------------------------------------------
# T5's SentencePiece model from the shared fixtures (outside the checkout), for `ladder tokenize`.
mkdir -p "$WORK/home"
# The sentence and HF's ids for it: the first GLUE case of HF's slow T5Tokenizer in the same fixtures.
spm_dir="${LADDER_FIXTURES_DIR:-$ROOT/../shared/fixtures}/t5-spiece"
if [[ -f "$spm_dir/spiece.model" ]]; then
    cp "$spm_dir/spiece.model" "$WORK/home/spiece.model"
    python3 - "$spm_dir/expected/hf_slow_t5tokenizer_glue_and_edge_cases.json" "$WORK/home" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))["glue_cases"][0]
open(sys.argv[2] + "/sentence.txt", "w").write(case["input_text"])
open(sys.argv[2] + "/hf_ids.txt", "w").write(json.dumps([case["input_ids"]], separators=(",", ":")))
PY
else
    [[ "${CI:-}" != true ]] || fail "no $spm_dir/spiece.model (the shared fixtures; CI=true)"
    log "no $spm_dir/spiece.model: ladder tokenize is not run"
fi
log "dpkg -i $(basename "$DEB")"
dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i failed"; }
INSTALLED=1

# The checks that run with the build folder (and, in a namespace, the checkout) out of reach. HOME and the
# XDG folders are new and empty: a first start with no store, no settings and no demo.
cat >"$WORK/installed.sh" <<EOF
set -euo pipefail
export HOME="$WORK/home" XDG_DATA_HOME="$WORK/home/data" XDG_CACHE_HOME="$WORK/home/cache" XDG_CONFIG_HOME="$WORK/home/config"
unset LADDER_VENV LADDER_DEMO_DIR LADDER_WORKER LADDER_SPM_MODULE
mkdir -p "\$HOME"
cd /
for dir in \$HIDDEN; do
    [[ -z "\$(ls -A "\$dir" 2>/dev/null)" ]] || { echo "[package] FAIL: \$dir is still reachable"; exit 1; }
done
echo "[package] out of reach (empty): \$HIDDEN"
echo "[package] ldd /usr/lib/ladderbench/ladder:"
ldd /usr/lib/ladderbench/ladder | sed 's/^/[package]   /' | grep -E 'libtorch_cpu|libc10.so|libcudart|not found' || true
for exe in /usr/lib/ladderbench/ladder /usr/lib/ladderbench/ladderbench; do
    if ldd "\$exe" | grep -E "not found|$ROOT|$BUILD"; then echo "[package] FAIL: \$exe: a library is missing or comes from the checkout"; exit 1; fi
done
echo "[package] \$ ladder --version"
ladder --version
echo "[package] \$ ladder info --shape t5-small"
OMP_NUM_THREADS=1 ladder info --shape t5-small
echo "[package] \$ ladder devices"
OMP_NUM_THREADS=1 ladder devices
if [[ -f "\$HOME/spiece.model" ]]; then
    echo "[package] \$ ladder tokenize --spm spiece.model '\$(cat "\$HOME/sentence.txt")'   (libladder_spm.so from /usr/lib/ladderbench)"
    ids=\$(ladder tokenize --spm "\$HOME/spiece.model" "\$(cat "\$HOME/sentence.txt")")
    echo "\$ids   (HF's slow T5Tokenizer: \$(cat "\$HOME/hf_ids.txt"))"
    [[ "\$ids" == "\$(cat "\$HOME/hf_ids.txt")" ]] || { echo "[package] FAIL: the ids differ from HF's"; exit 1; }
fi
echo "[package] \$ QT_QPA_PLATFORM=offscreen ladderbench --screenshot $WORK/home/first-start.png"
QT_QPA_PLATFORM=offscreen timeout 120 ladderbench --screenshot "$WORK/home/first-start.png"
file "$WORK/home/first-start.png" | grep -q 'PNG image data, 1280 x 800' || { echo "[package] FAIL: the screenshot is not a 1280x800 PNG"; exit 1; }
echo "[package] \$ LADDER_VENV=/nonexistent ladder info   (the wrapper's message when LibTorch is missing)"
rc=0; LADDER_VENV=/nonexistent ladder info 2>"\$HOME/wrapper.err" || rc=\$?
cat "\$HOME/wrapper.err"
[[ \$rc -eq 127 ]] && grep -q 'LADDER_VENV=/nonexistent holds no torch wheel' "\$HOME/wrapper.err" || { echo "[package] FAIL: wrapper exit \$rc"; exit 1; }
# The installed wrapper with its torch folder pointed elsewhere: missing, then a wheel of another version.
sed "s|^torch_lib=.*|torch_lib=\$HOME/fake/torch/lib|" /usr/bin/ladder >"\$HOME/ladder-wrapper"
echo "[package] \$ ladder info   (the wrapper, its torch folder missing)"
rc=0; sh "\$HOME/ladder-wrapper" info 2>"\$HOME/wrapper.err" || rc=\$?
cat "\$HOME/wrapper.err"
[[ \$rc -eq 127 ]] && grep -q 'sudo /usr/lib/ladderbench/install-torch' "\$HOME/wrapper.err" || { echo "[package] FAIL: wrapper exit \$rc"; exit 1; }
mkdir -p "\$HOME/fake/torch/lib" && touch "\$HOME/fake/torch/lib/libtorch_cpu.so"
echo "__version__ = '2.10.0+cpu'" >"\$HOME/fake/torch/version.py"
echo "[package] \$ ladder info   (the wrapper, torch 2.10.0 in its torch folder)"
rc=0; sh "\$HOME/ladder-wrapper" info 2>"\$HOME/wrapper.err" || rc=\$?
cat "\$HOME/wrapper.err"
[[ \$rc -eq 127 ]] && grep -q 'holds torch 2.10.0+cpu' "\$HOME/wrapper.err" || { echo "[package] FAIL: wrapper exit \$rc"; exit 1; }
EOF

hide="${LADDER_PACKAGE_TEST_HIDE:-namespace}"
if [[ "$hide" == namespace ]] && ! unshare -m --propagation private true 2>/dev/null; then
    log "unshare -m is refused here: moving the build folder away instead"
    hide=move
fi
t0=$SECONDS
if [[ "$hide" == namespace ]]; then
    log "hiding $BUILD and $ROOT (tmpfs over both in a private mount namespace)"
    unshare -m --propagation private bash -c \
        "mount -t tmpfs none '$BUILD' && mount -t tmpfs none '$ROOT' && HIDDEN='$BUILD $ROOT' bash '$WORK/installed.sh'" ||
        fail "the installed programs failed (above)"
else
    MOVED="$BUILD.away-$$"
    log "moving $BUILD to $MOVED"
    mv "$BUILD" "$MOVED"
    mkdir "$BUILD" # an empty folder where the build was: installed.sh checks it is empty
    HIDDEN="$BUILD" bash "$WORK/installed.sh" || fail "the installed programs failed (above)"
    rmdir "$BUILD"
    mv "$MOVED" "$BUILD" && log "moved $MOVED back to $BUILD"
    MOVED=""
fi
log "installed programs checked in $((SECONDS - t0)) s"
log "PASS in $((SECONDS - START)) s"
