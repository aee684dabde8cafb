#!/usr/bin/env bash
# LadderBench set-up for Debian 12: install what is missing, build, then launch or test.
#
#   bash packaging/setup.sh launch [--no-launch] [-- ARGS for ladderbench]
#       install, Release build in build/release, run build/release/bin/ladderbench
#   bash packaging/setup.sh test
#       install, RelWithDebInfo build with tests in build/test, ctest --output-on-failure -j2
#
# Idempotent: a second run installs nothing, downloads nothing and rebuilds only what changed.
# Environment:
#   LADDER_VENV       virtual environment holding the torch wheel   (default /opt/ladderbench/venv)
#   CCACHE_DIR        compiler cache shared by every build and CI    (default /opt/ladderbench/ccache)
#   LADDER_NO_LAUNCH  1: build but do not start the workbench (same as --no-launch)
#   LADDER_NO_DEMO    1: launch without building the built-in demo first (`ladder demo`)
#   LADDER_JOBS       parallel compile jobs                          (default: number of cores)
set -euo pipefail

readonly TORCH_VERSION=2.11.0
readonly APT_PACKAGES=(
    # build tools
    cmake ninja-build g++ pkg-config git ccache python3-venv python3-pip
    # libraries (docs/ARCHITECTURE.md)
    qt6-base-dev qt6-svg-dev libqcustomplot-dev libqcustomplot2.1-qt6 libgl-dev
    libsentencepiece-dev sentencepiece libsqlite3-dev sqlite3 nlohmann-json3-dev libcli11-dev libgtest-dev
    # headless GUI runs, screenshots, data
    xvfb xauth imagemagick wordnet-base
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LADDER_VENV="${LADDER_VENV:-/opt/ladderbench/venv}"
export CCACHE_DIR="${CCACHE_DIR:-/opt/ladderbench/ccache}"
JOBS="${LADDER_JOBS:-$(nproc)}"

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# ---- timing -------------------------------------------------------------------------------------
PHASES=()
PHASE_NAME=""
PHASE_START=0
SCRIPT_START=$(date +%s)
phase() { # phase NAME: ends the running phase (if any) and starts NAME
    phase_end
    PHASE_NAME="$1"
    PHASE_START=$(date +%s)
    log "== $PHASE_NAME"
}
phase_end() {
    if [[ -n "$PHASE_NAME" ]]; then
        local took=$(($(date +%s) - PHASE_START))
        PHASES+=("$(printf '%-10s %5d s' "$PHASE_NAME" "$took")")
        log "   $PHASE_NAME took ${took} s"
        PHASE_NAME=""
    fi
}
timing_summary() {
    phase_end
    log "timing:"
    local line
    for line in "${PHASES[@]}"; do log "  $line"; done
    log "  $(printf '%-10s %5d s' total $(($(date +%s) - SCRIPT_START)))"
}

# ---- privileges ---------------------------------------------------------------------------------
SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO=(sudo)
fi
as_root() {
    if [[ ${#SUDO[@]} -gt 0 ]] && ! command -v sudo >/dev/null; then
        die "need root for: $*  (run as root or install sudo)"
    fi
    "${SUDO[@]}" "$@"
}

# A folder this user can write, created (with sudo when needed) if missing.
ensure_writable_dir() {
    local dir="$1"
    if [[ -d "$dir" && -w "$dir" ]]; then
        return
    fi
    if ! mkdir -p "$dir" 2>/dev/null || [[ ! -w "$dir" ]]; then
        as_root mkdir -p "$dir"
        as_root chown "$(id -u):$(id -g)" "$dir"
    fi
}

# ---- install ------------------------------------------------------------------------------------
install_apt_packages() {
    if ! command -v dpkg-query >/dev/null; then
        log "no dpkg-query: not a Debian system, skipping apt (install the equivalents of: ${APT_PACKAGES[*]})"
        return
    fi
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" != "ii "* ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "apt: all ${#APT_PACKAGES[@]} packages present, nothing to install"
        return
    fi
    log "apt: installing ${#missing[@]} missing packages (a fresh Debian 12 downloads about 400 MB):"
    log "     ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

installed_torch_version() {
    "$LADDER_VENV/bin/python" -c 'import sys, torch; sys.stdout.write(torch.__version__)' 2>/dev/null || true
}

install_torch() {
    if [[ -x "$LADDER_VENV/bin/python" ]] && ! "$LADDER_VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "venv: $LADDER_VENV/bin/python does not run (its base Python moved?); recreating the venv"
        python3 -m venv --clear "$LADDER_VENV"
    fi
    if [[ ! -x "$LADDER_VENV/bin/python" ]]; then
        ensure_writable_dir "$(dirname "$LADDER_VENV")"
        log "venv: creating $LADDER_VENV with $(command -v python3) ($(python3 --version 2>&1))"
        python3 -m venv "$LADDER_VENV"
    fi
    local have
    have="$(installed_torch_version)"
    # The wheel reports a local version such as 2.11.0+cu130.
    if [[ "$have" == "$TORCH_VERSION" || "$have" == "$TORCH_VERSION+"* ]]; then
        log "torch: $have already in $LADDER_VENV, nothing to download"
        return
    fi
    log "torch: ${have:-not installed} in $LADDER_VENV; installing torch==$TORCH_VERSION from PyPI"
    log "       (the wheel and its CUDA 13 libraries: about 3 GB to download, 4.6 GB in the venv)"
    "$LADDER_VENV/bin/python" -m pip install --no-cache-dir --disable-pip-version-check "torch==$TORCH_VERSION" ||
        die "pip install torch==$TORCH_VERSION failed (no network? it needs about 5 GB free in $LADDER_VENV)"
    have="$(installed_torch_version)"
    [[ "$have" == "$TORCH_VERSION"* ]] || die "torch: after pip install, \`import torch\` gives '${have:-an error}'"
    log "torch: $have installed"
}

install_step() {
    phase apt
    install_apt_packages
    phase torch
    install_torch
    ensure_writable_dir "$CCACHE_DIR"
    if [[ -d /usr/local/cuda && -x /usr/local/cuda/bin/nvcc ]]; then
        log "CUDA toolkit: $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), the CUDA code paths are built"
    else
        log "CUDA toolkit: none in /usr/local/cuda, building the CPU-only code paths (install the CUDA 13 toolkit there for GPU support)"
    fi
}

# ---- build --------------------------------------------------------------------------------------
configure_and_build() { # configure_and_build BUILD_DIR BUILD_TYPE TESTS(ON|OFF)
    local dir="$1" type="$2" tests="$3"
    # A folder configured with another generator cannot be reused by Ninja: start it afresh.
    if [[ -f "$dir/CMakeCache.txt" ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$dir/CMakeCache.txt"; then
        log "configure: $dir was made with another generator, reconfiguring from scratch"
        rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    phase configure
    cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" \
        -DLADDER_VENV="$LADDER_VENV" -DLADDER_BUILD_TESTS="$tests" -DLADDER_BUILD_GUI=ON
    phase build
    local before after
    before="$(ccache --print-stats 2>/dev/null | awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{s+=$2} END{print s+0}')"
    cmake --build "$dir" --parallel "$JOBS"
    after="$(ccache --print-stats 2>/dev/null | awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{s+=$2} END{print s+0}')"
    log "ccache ($CCACHE_DIR): $((after - before)) hits in this build"
}

# ---- modes --------------------------------------------------------------------------------------
mode_launch() {
    local no_launch="$1"
    shift
    local dir="$ROOT/build/release"
    install_step
    configure_and_build "$dir" Release OFF
    local exe="$dir/bin/ladderbench"
    [[ -x "$exe" ]] || die "build finished but $exe is missing"
    if [[ "$no_launch" == 1 ]]; then
        timing_summary
        log "built $exe (not launched: --no-launch / LADDER_NO_LAUNCH=1)"
        return 0
    fi
    # The window preselects the built-in demo: build it once (WordNet tasks in seconds, the backbone's
    # pretraining in about 5 minutes on 2 cores; cached under ~/.cache/ladderbench, so later launches skip it).
    if [[ "${LADDER_NO_DEMO:-0}" != 1 ]]; then
        phase demo
        "$dir/bin/ladder" demo >/dev/null || die "building the built-in demo failed (see the message above)"
        phase_end
    fi
    timing_summary
    if [[ -n "${DISPLAY:-}" || -n "${WAYLAND_DISPLAY:-}" ]]; then
        log "launching $exe"
        exec "$exe" "$@"
    fi
    command -v xvfb-run >/dev/null || die "no display and no xvfb-run; set DISPLAY or install xvfb"
    log "no display: launching $exe under Xvfb (nothing is visible; stop it with Ctrl+C;"
    log "for a picture run: $exe --screenshot main-window.png)"
    exec xvfb-run -a -s "-screen 0 1280x800x24" "$exe" "$@"
}

mode_test() {
    local dir="$ROOT/build/test"
    install_step
    configure_and_build "$dir" RelWithDebInfo ON
    phase ctest
    local rc=0
    (cd "$dir" && ctest --output-on-failure -j2) || rc=$?
    timing_summary
    log "ctest exit status: $rc"
    return "$rc"
}

main() {
    [[ $# -ge 1 ]] || { usage >&2; exit 2; }
    local mode="$1"
    shift
    local no_launch="${LADDER_NO_LAUNCH:-0}"
    local passthrough=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --no-launch) no_launch=1 ;;
            --) shift; passthrough=("$@"); break ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
    case "$mode" in
        launch|test) ;;
        -h|--help|help) usage; exit 0 ;;
        *) usage >&2; die "unknown mode '$mode': expected launch or test" ;;
    esac
    log "LadderBench set-up ($mode) in $ROOT"
    log "a first run on a fresh Debian 12 downloads about 400 MB of apt packages and about 3 GB of"
    log "torch $TORCH_VERSION wheels (4.6 GB in $LADDER_VENV), then compiles for about 4 minutes on 2 cores:"
    log "10 to 15 minutes in all on a 100 Mbit/s line. Later runs download nothing and rebuild only what"
    log "changed (compiler cache in $CCACHE_DIR; a fresh clone with a warm cache builds in seconds)"
    case "$mode" in
        launch) mode_launch "$no_launch" "${passthrough[@]}" ;;
        test) mode_test ;;
    esac
}

main "$@"
