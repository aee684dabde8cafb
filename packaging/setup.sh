#!/usr/bin/env bash
# LadderBench set-up for Debian 12: install what is missing, build, then launch or test.
#
#   bash packaging/setup.sh launch [--no-launch] [-- ARGS for ladderbench]
#       install, Release build in build/release, run build/release/bin/ladderbench
#   bash packaging/setup.sh test
#       install, RelWithDebInfo build with tests in build/test, ctest --output-on-failure -j2, the fuzz step,
#       then the Debian package built, installed and run from /usr/bin (tests/package/test_package.sh)
#
# Idempotent: a second run installs nothing, downloads nothing and rebuilds only what changed.
# Environment:
#   LADDER_TORCH      cpu or cuda: which torch wheel (default: cuda where an NVIDIA driver or the CUDA toolkit
#                     is present: nvidia-smi, /proc/driver/nvidia, nvcc, /usr/local/cuda/bin/nvcc; cpu elsewhere)
#   LADDER_VENV       virtual environment holding the torch wheel   (default /opt/ladderbench/venv)
#   CCACHE_DIR        compiler cache shared by every build and CI    (default /opt/ladderbench/ccache)
#   LADDER_NO_LAUNCH  1: build but do not start the workbench (same as --no-launch)
#   LADDER_NO_DEMO    1: launch without building the built-in demo first (`ladder demo`)
#   LADDER_JOBS       parallel compile jobs                          (default: number of cores)
#   LADDER_SETUP_DRY_RUN  1: print what would be installed, reinstalled and built, and change nothing
#   LADDER_PACKAGE_TEST   0: test mode skips the package step (tests/package/test_package.sh)
#
# Several users: /opt/ladderbench is shared. The compiler cache there is made writable by everyone (and
# ccache's umask set to 000 in it); the venv is used read-only by users who do not own it, and a user who
# needs another torch flavour than the shared venv holds gets a venv of their own (~/.local/share/ladderbench).
# A cache or build folder this user cannot write falls back to one under ~/.cache/ladderbench.
set -euo pipefail

readonly TORCH_VERSION=2.11.0
readonly TORCH_CPU_INDEX="${LADDER_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
readonly DEFAULT_VENV=/opt/ladderbench/venv
readonly DEFAULT_CCACHE_DIR=/opt/ladderbench/ccache
readonly CUDA_TOOLKIT_DIR=/usr/local/cuda
readonly APT_PACKAGES=(
    # build tools
    cmake ninja-build g++ lld pkg-config git ccache python3-venv python3-pip clang-format
    # the fuzz targets (tools/fuzz.sh): clang with libFuzzer and the sanitizers' runtimes
    clang libclang-rt-14-dev
    # libraries (docs/ARCHITECTURE.md)
    qt6-base-dev qt6-svg-dev libqcustomplot-dev libqcustomplot2.1-qt6 libgl-dev
    libsentencepiece-dev sentencepiece libicu-dev libsqlite3-dev sqlite3 libssl-dev nlohmann-json3-dev libcli11-dev libgtest-dev
    # gloo's headers for c10d's ProcessGroupGloo (core/dist; gloo itself is inside libtorch_cpu)
    libgloo-dev
    # headless GUI runs, screenshots, data
    xvfb xauth imagemagick wordnet-base
    # the Debian package and its checks (cmake/LadderPackaging.cmake, tests/package/test_package.sh): CPack's
    # dpkg-shlibdeps and strip, the .desktop and AppStream validators, man to check the pages, rsvg-convert
    # for resources/icons/render-icons.sh
    dpkg-dev fakeroot file binutils desktop-file-utils appstream man-db librsvg2-bin
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_IS_DEFAULT=0
[[ -n "${LADDER_VENV:-}" ]] || VENV_IS_DEFAULT=1
LADDER_VENV="${LADDER_VENV:-$DEFAULT_VENV}"
CCACHE_IS_DEFAULT=0
[[ -n "${CCACHE_DIR:-}" ]] || CCACHE_IS_DEFAULT=1
export CCACHE_DIR="${CCACHE_DIR:-$DEFAULT_CCACHE_DIR}"
JOBS="${LADDER_JOBS:-$(nproc)}"
DRY_RUN="${LADDER_SETUP_DRY_RUN:-0}"
USER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ladderbench"
USER_DATA="${XDG_DATA_HOME:-$HOME/.local/share}/ladderbench"

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
dry() { [[ "$DRY_RUN" == 1 ]]; }

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

# Creates a missing folder this user can write (with sudo when its parent is not writable; the new folder
# is then handed to this user). A folder that exists is left as it is: another user's folder is never taken
# over (that broke the user who made it); callers fall back to a folder of their own instead.
# Returns 1 when the folder exists and this user cannot write it.
make_writable_dir() {
    local dir="$1"
    if [[ -d "$dir" ]]; then
        [[ -w "$dir" ]]
        return
    fi
    if ! mkdir -p "$dir" 2>/dev/null; then
        local parent
        parent="$(dirname "$dir")"
        if [[ ! -d "$parent" ]]; then
            # /opt/ladderbench: sticky and writable by all, as /tmp is, so that every user can add to it
            # and nobody can remove what another user made.
            as_root mkdir -p "$parent"
            as_root chmod 1777 "$parent"
        fi
        mkdir -p "$dir" 2>/dev/null || { as_root mkdir -p "$dir" && as_root chown "$(id -u):$(id -g)" "$dir"; }
    fi
    [[ -w "$dir" ]]
}

# True when this user can write everything in the first levels of `dir` (ccache's two levels of subfolders,
# their stats files, a build folder's cache).
tree_writable() {
    local dir="$1"
    # (ccache.conf only needs to be readable: a config every user could write would let one user choose the
    # commands ccache runs for the others.)
    [[ -d "$dir" && -w "$dir" ]] &&
        [[ -z "$(find "$dir" -maxdepth 2 ! -writable ! -path "$dir/ccache.conf" -print -quit 2>/dev/null)" ]]
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
    if dry; then
        log "dry run: would run apt-get update and apt-get install"
        return
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# ---- torch: which wheel, in which venv ------------------------------------------------------------
# Sets TORCH_FLAVOUR (cpu|cuda) and TORCH_FLAVOUR_WHY.
detect_torch_flavour() {
    case "${LADDER_TORCH:-}" in
        cpu|cuda) TORCH_FLAVOUR="$LADDER_TORCH"; TORCH_FLAVOUR_WHY="LADDER_TORCH=$LADDER_TORCH"; return ;;
        ""|auto) ;;
        *) die "LADDER_TORCH='$LADDER_TORCH': expected cpu or cuda (or unset: detected)" ;;
    esac
    TORCH_FLAVOUR=cuda
    if command -v nvidia-smi >/dev/null; then
        TORCH_FLAVOUR_WHY="an NVIDIA driver ($(command -v nvidia-smi))"
    elif [[ -e /proc/driver/nvidia ]]; then
        TORCH_FLAVOUR_WHY="an NVIDIA driver (/proc/driver/nvidia)"
    elif command -v nvcc >/dev/null; then
        TORCH_FLAVOUR_WHY="the CUDA toolkit ($(command -v nvcc))"
    elif [[ -x "$CUDA_TOOLKIT_DIR/bin/nvcc" ]]; then
        TORCH_FLAVOUR_WHY="the CUDA toolkit ($CUDA_TOOLKIT_DIR/bin/nvcc)"
    else
        TORCH_FLAVOUR=cpu
        TORCH_FLAVOUR_WHY="no NVIDIA driver (nvidia-smi, /proc/driver/nvidia) and no CUDA toolkit (nvcc, $CUDA_TOOLKIT_DIR)"
    fi
}

# "VERSION FLAVOUR" of the torch in venv $1 (2.11.0+cu130 cuda, 2.11.0+cpu cpu), empty when none imports.
venv_torch() {
    [[ -x "$1/bin/python" ]] || return 0
    "$1/bin/python" -c 'import sys, torch; sys.stdout.write(torch.__version__ + (" cuda" if torch.version.cuda else " cpu"))' \
        2>/dev/null || true
}

# True when this user may change venv $1: it is theirs (or they are root) and its site-packages is writable.
venv_changeable() {
    local venv="$1"
    [[ -d "$venv" ]] || return 0
    [[ "$(id -u)" -eq 0 || -O "$venv" ]] || return 1
    [[ -w "$venv" ]] && [[ -z "$(find "$venv/lib" -maxdepth 2 -name site-packages ! -writable -print -quit 2>/dev/null)" ]]
}

# Sets TORCH_ACTION (nothing|install|switch) and TORCH_HAVE for venv $1.
plan_torch() {
    TORCH_HAVE="$(venv_torch "$1")"
    local version="${TORCH_HAVE% *}" flavour="${TORCH_HAVE#* }"
    if [[ -z "$TORCH_HAVE" ]]; then
        TORCH_ACTION=install
    elif [[ "$version" != "$TORCH_VERSION" && "$version" != "$TORCH_VERSION+"* ]]; then
        TORCH_ACTION=install
    elif [[ "$flavour" != "$TORCH_FLAVOUR" ]]; then
        TORCH_ACTION=switch
    else
        TORCH_ACTION=nothing
    fi
}

# The CUDA wheel's own packages (torch's requirements named nvidia-*, cuda-*, triton, and theirs) that are
# installed in venv $1: what a switch to the CPU wheel removes with torch.
cuda_wheel_packages() {
    "$1/bin/python" - <<'PY' 2>/dev/null || true
import importlib.metadata as md, re
def name(req): return re.split(r"[ ;<>=!~\[(]", req.strip(), 1)[0].lower().replace("_", "-")
seen, todo = set(), ["torch"]
while todo:
    try: reqs = md.requires(todo.pop()) or []
    except md.PackageNotFoundError: continue
    for r in reqs:
        n = name(r)
        if (n.startswith(("nvidia-", "cuda-")) or n == "triton") and n not in seen:
            try: md.version(n)
            except md.PackageNotFoundError: continue
            seen.add(n); todo.append(n)
print(" ".join(sorted(seen)))
PY
}

# The Python a venv is made with: Debian's (python3-venv above), which every user can run. A venv made with
# a Python under one user's home (pyenv in /root) cannot be run by the others.
venv_base_python() {
    if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi
}

# What venv $1 holds, in words, for this user.
venv_describe() {
    if [[ ! -e "$1" ]]; then
        echo "nothing (no venv)"
    elif ! "$1/bin/python" -c 'import sys' 2>/dev/null; then
        echo "a Python $(id -un) cannot run ($(sed -n 's/^home *= *//p' "$1/pyvenv.cfg" 2>/dev/null)/python3)"
    else
        echo "${TORCH_HAVE:-no importable torch}"
    fi
}

# Picks the venv (LADDER_VENV) and what to do in it, then does it (or, in a dry run, says it).
install_torch() {
    detect_torch_flavour
    log "torch: the $TORCH_FLAVOUR wheel ($TORCH_FLAVOUR_WHY; LADDER_TORCH=cpu|cuda overrides)"
    if [[ -e "$LADDER_VENV/bin/python" || -L "$LADDER_VENV/bin/python" ]] &&
        ! "$LADDER_VENV/bin/python" -c 'import sys' 2>/dev/null && venv_changeable "$LADDER_VENV"; then
        log "venv: $LADDER_VENV/bin/python does not run (its base Python moved?); recreating it with $(venv_base_python)"
        dry || "$(venv_base_python)" -m venv --clear "$LADDER_VENV"
    fi
    plan_torch "$LADDER_VENV"
    if [[ "$TORCH_ACTION" != nothing ]] && ! venv_changeable "$LADDER_VENV"; then
        # Another user's venv: use it as it is when it fits, never change it under them.
        [[ "$VENV_IS_DEFAULT" == 1 ]] ||
            die "torch: $LADDER_VENV holds $(venv_describe "$LADDER_VENV"), $TORCH_FLAVOUR $TORCH_VERSION is wanted, and $(id -un) cannot change it (choose another LADDER_VENV)"
        log "venv: $LADDER_VENV holds $(venv_describe "$LADDER_VENV"), not torch $TORCH_VERSION ($TORCH_FLAVOUR), and"
        log "      belongs to another user: using $USER_DATA/venv"
        LADDER_VENV="$USER_DATA/venv"
        plan_torch "$LADDER_VENV"
    fi
    if [[ "$TORCH_ACTION" == nothing ]]; then
        log "torch: ${TORCH_HAVE% *} ($TORCH_FLAVOUR) already in $LADDER_VENV, nothing to download"
        return
    fi
    local pip_args=(--no-cache-dir --disable-pip-version-check) size
    if [[ "$TORCH_FLAVOUR" == cpu ]]; then
        pip_args+=(--index-url "$TORCH_CPU_INDEX")
        size="the CPU wheel from $TORCH_CPU_INDEX: about a tenth of the CUDA wheel's 3 GB"
    else
        size="the wheel from PyPI with its CUDA 13 libraries: about 3 GB to download, 4.6 GB in the venv"
    fi
    local remove=()
    if [[ "$TORCH_ACTION" == switch ]]; then
        remove=(torch)
        [[ "$TORCH_FLAVOUR" == cpu ]] && read -r -a remove <<<"torch $(cuda_wheel_packages "$LADDER_VENV")"
        log "torch: $LADDER_VENV holds ${TORCH_HAVE% *} (${TORCH_HAVE#* }); switching to the $TORCH_FLAVOUR wheel:"
        log "       uninstalling ${remove[*]}"
    else
        log "torch: ${TORCH_HAVE:-not installed} in $LADDER_VENV; installing torch==$TORCH_VERSION"
    fi
    log "       ($size)"
    if dry; then
        log "dry run: would run: pip uninstall -y ${remove[*]:-(nothing)}; pip install ${pip_args[*]} torch==$TORCH_VERSION"
        return
    fi
    if [[ ! -x "$LADDER_VENV/bin/python" ]]; then
        make_writable_dir "$(dirname "$LADDER_VENV")" || die "venv: cannot write $(dirname "$LADDER_VENV") to create $LADDER_VENV"
        log "venv: creating $LADDER_VENV with $(venv_base_python) ($("$(venv_base_python)" --version 2>&1))"
        "$(venv_base_python)" -m venv "$LADDER_VENV"
    fi
    local rc=0
    if [[ ${#remove[@]} -gt 0 ]]; then
        "$LADDER_VENV/bin/python" -m pip uninstall -y --disable-pip-version-check "${remove[@]}" || rc=$?
        [[ $rc -eq 0 ]] || die "pip uninstall ${remove[*]} failed with exit status $rc (pip's message is above)"
    fi
    "$LADDER_VENV/bin/python" -m pip install "${pip_args[@]}" "torch==$TORCH_VERSION" || rc=$?
    [[ $rc -eq 0 ]] || die "pip install torch==$TORCH_VERSION ($TORCH_FLAVOUR) into $LADDER_VENV failed with exit status $rc; pip's message is above"
    plan_torch "$LADDER_VENV"
    [[ "$TORCH_ACTION" == nothing ]] ||
        die "torch: after pip install, $LADDER_VENV has '${TORCH_HAVE:-no importable torch}', not $TORCH_VERSION ($TORCH_FLAVOUR)"
    log "torch: ${TORCH_HAVE% *} ($TORCH_FLAVOUR) installed in $LADDER_VENV"
}

# ---- the compiler cache -----------------------------------------------------------------------------
# The shared cache (/opt/ladderbench/ccache) is writable by every user, and ccache's umask in it is 000 so
# that what one user's build adds stays writable for the next. A cache this user cannot write (made by an
# older set-up, or by another user who did not share it) is left alone: this user gets one of their own.
setup_ccache() {
    if [[ -d "$CCACHE_DIR" ]] && tree_writable "$CCACHE_DIR"; then
        if [[ "$CCACHE_IS_DEFAULT" == 1 && ( "$(id -u)" -eq 0 || -O "$CCACHE_DIR" ) ]] &&
            ! grep -qs '^umask *= *0*$' "$CCACHE_DIR/ccache.conf"; then
            log "ccache: sharing $CCACHE_DIR with every user (chmod -R a+rwX, umask = 000 in its ccache.conf)"
            dry || { chmod -R a+rwX "$CCACHE_DIR" && ccache --set-config umask=000; }
        fi
    elif [[ ! -e "$CCACHE_DIR" ]]; then
        log "ccache: creating $CCACHE_DIR$([[ "$CCACHE_IS_DEFAULT" == 1 ]] && echo ', shared by every user')"
        if ! dry; then
            make_writable_dir "$CCACHE_DIR" || die "ccache: cannot create $CCACHE_DIR"
            if [[ "$CCACHE_IS_DEFAULT" == 1 ]]; then
                chmod a+rwx "$CCACHE_DIR"
                ccache --set-config umask=000
            fi
        fi
    else
        local own="$USER_CACHE/ccache"
        log "ccache: $CCACHE_DIR is not writable by $(id -un) throughout (another user's cache, not shared);"
        log "        using $own (to share it: sudo chmod -R a+rwX $CCACHE_DIR && CCACHE_DIR=$CCACHE_DIR ccache --set-config umask=000)"
        export CCACHE_DIR="$own"
        dry || make_writable_dir "$CCACHE_DIR" || die "ccache: cannot create $CCACHE_DIR"
    fi
    # Room for the precompiled headers: each build's images (core's and the unit tests') are 600-700 MB,
    # and ccache's default 5 GB evicted them between builds, so a warm CI build recompiled every unit test
    # (195 s instead of about 60; docs/BUILD.md). A cache whose size was set otherwise is left alone.
    if ! dry && [[ -w "$CCACHE_DIR" ]] && ! grep -qs '^max_size' "$CCACHE_DIR/ccache.conf"; then
        ccache --set-config max_size=20G && log "ccache: max_size = 20G (the header images are large)"
    fi
    log "ccache: $CCACHE_DIR"
}

install_step() {
    phase apt
    install_apt_packages
    phase torch
    install_torch
    setup_ccache
    if [[ -d "$CUDA_TOOLKIT_DIR" && -x "$CUDA_TOOLKIT_DIR/bin/nvcc" ]]; then
        log "CUDA toolkit: $("$CUDA_TOOLKIT_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), the CUDA code paths are built$([[ "$TORCH_FLAVOUR" == cpu ]] && echo ' only with the CUDA wheel (this is the CPU one: CPU-only build)')"
    else
        log "CUDA toolkit: none in $CUDA_TOOLKIT_DIR, building the CPU-only code paths (install the CUDA 13 toolkit there for GPU support)"
    fi
}

# ---- build --------------------------------------------------------------------------------------
# Sets BUILD_DIR: $ROOT/build/NAME, or, when this user cannot write that (another user's build in a shared
# clone), a folder of their own under ~/.cache/ladderbench/build.
choose_build_dir() {
    local name="$1"
    BUILD_DIR="$ROOT/build/$name"
    if [[ -e "$BUILD_DIR" ]]; then
        tree_writable "$BUILD_DIR" && return
    elif dry || mkdir -p "$BUILD_DIR" 2>/dev/null; then
        return
    fi
    local own
    own="$USER_CACHE/build/$(basename "$ROOT")-$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)/$name"
    log "build: $BUILD_DIR is not writable by $(id -un); building in $own"
    BUILD_DIR="$own"
    dry || mkdir -p "$BUILD_DIR"
}

configure_and_build() { # configure_and_build BUILD_DIR BUILD_TYPE TESTS(ON|OFF)
    local dir="$1" type="$2" tests="$3"
    # A folder configured with another generator cannot be reused by Ninja: start it afresh.
    if [[ -f "$dir/CMakeCache.txt" ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$dir/CMakeCache.txt"; then
        log "configure: $dir was made with another generator, reconfiguring from scratch"
        dry || rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    # Another venv or torch flavour than the folder was configured with: LibTorch's cached CMake variables
    # (CUDA's above all) are stale, so configure afresh.
    # (A folder configured before this was recorded is kept as it is.)
    local torch_id="$LADDER_VENV $TORCH_FLAVOUR" was
    was="$(cat "$dir/.ladder-torch" 2>/dev/null || true)"
    if [[ -f "$dir/CMakeCache.txt" && -n "$was" && "$was" != "$torch_id" ]]; then
        log "configure: $dir was configured for the torch '$was', now '$torch_id': reconfiguring from scratch"
        dry || rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    if dry; then
        log "dry run: would configure and build $dir ($type, tests $tests) with the torch of $LADDER_VENV"
        return
    fi
    phase configure
    cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" \
        -DLADDER_VENV="$LADDER_VENV" -DLADDER_PYTHON="$LADDER_VENV/bin/python" \
        -DLADDER_BUILD_TESTS="$tests" -DLADDER_BUILD_GUI=ON
    printf '%s\n' "$torch_id" >"$dir/.ladder-torch"
    phase build
    local before after
    before="$(ccache --print-stats 2>/dev/null | awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{s+=$2} END{print s+0}')"
    if [[ -f "$dir/.ladder-last-build" ]]; then
        log "the last build in $dir: $(cat "$dir/.ladder-last-build")"
    fi
    local t0=$SECONDS
    cmake --build "$dir" --parallel "$JOBS"
    after="$(ccache --print-stats 2>/dev/null | awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{s+=$2} END{print s+0}')"
    log "ccache ($CCACHE_DIR): $((after - before)) hits in this build"
    printf '%d s with %s parallel jobs, %d compiler cache hits (%s)\n' "$((SECONDS - t0))" "$JOBS" "$((after - before))" \
        "$(date -u +%Y-%m-%d)" >"$dir/.ladder-last-build"
}

# ---- modes --------------------------------------------------------------------------------------
mode_launch() {
    local no_launch="$1"
    shift
    install_step
    choose_build_dir release
    local dir="$BUILD_DIR"
    configure_and_build "$dir" Release OFF
    if dry; then
        log "dry run: nothing was changed"
        return 0
    fi
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
    install_step
    choose_build_dir test
    local dir="$BUILD_DIR"
    configure_and_build "$dir" RelWithDebInfo ON
    if dry; then
        log "dry run: would run ctest in $dir; nothing was changed"
        return 0
    fi
    phase ctest
    local rc=0
    (cd "$dir" && ctest --output-on-failure -j2) || rc=$?
    log "ctest exit status: $rc"
    # Every fuzz target on its committed corpus (docs/RELIABILITY.md): LADDER_FUZZ_SECONDS each, 30 by
    # default; 0 skips the step (and says so).
    local fuzz_seconds="${LADDER_FUZZ_SECONDS:-30}" fuzz_rc=0
    if [[ "$fuzz_seconds" == 0 ]]; then
        log "fuzz: skipped (LADDER_FUZZ_SECONDS=0)"
    else
        phase fuzz
        bash "$ROOT/tools/fuzz.sh" "$fuzz_seconds" || fuzz_rc=$?
        log "fuzz exit status: $fuzz_rc"
    fi
    # The Debian package (docs/PACKAGING.md): cpack, the validators, dpkg -i, the installed programs run with
    # the build folder out of reach, dpkg -r. Not a CTest test: it installs into the system and hides the
    # build folder, which tests running beside it need. Needs root (skipped, exit 77, otherwise).
    local package_rc=0
    if [[ "${LADDER_PACKAGE_TEST:-1}" == 0 ]]; then
        log "package: skipped (LADDER_PACKAGE_TEST=0)"
    else
        phase package
        if [[ ${#SUDO[@]} -gt 0 ]] && command -v sudo >/dev/null; then
            sudo env CI="${CI:-}" LADDER_FIXTURES_DIR="${LADDER_FIXTURES_DIR:-}" \
                bash "$ROOT/tests/package/test_package.sh" "$dir" || package_rc=$?
        else
            bash "$ROOT/tests/package/test_package.sh" "$dir" || package_rc=$?
        fi
        [[ "$package_rc" == 77 ]] && package_rc=0 # skipped, with its reason above
        log "package exit status: $package_rc"
    fi
    timing_summary
    [[ "$rc" != 0 ]] && return "$rc"
    [[ "$fuzz_rc" != 0 ]] && return "$fuzz_rc"
    return "$package_rc"
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
    log "a first run on a fresh Debian 12 downloads about 400 MB of apt packages and the torch $TORCH_VERSION"
    log "wheel (with an NVIDIA GPU or the CUDA toolkit: about 3 GB with its CUDA libraries, 4.6 GB in the venv;"
    log "elsewhere the CPU wheel, about a tenth of that), then compiles: 10-11 minutes on 2 cores with an empty"
    log "compiler cache, 1 minute with a warm one (measured 2026-12-05 from fresh clones, docs/BUILD.md). Later"
    log "runs download nothing and rebuild only what changed (cache in $CCACHE_DIR)"
    dry && log "dry run (LADDER_SETUP_DRY_RUN=1): nothing is installed, changed or built"
    case "$mode" in
        launch) mode_launch "$no_launch" "${passthrough[@]}" ;;
        test) mode_test ;;
    esac
}

# `source packaging/setup.sh` defines the functions only (for testing them one by one).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
