#!/usr/bin/env bash
# Fails (exit 1) when a C++ file of the repository is not formatted as the root .clang-format says, and
# lists each such file with the command that fixes it. Run by CTest (test_format) in every CI run;
# `cmake --build build/test --target format` formats them all.
#   tools/check_format.sh [CLANG_FORMAT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cf="${1:-$(command -v clang-format || command -v clang-format-14 || true)}"
if [[ -z "$cf" ]]; then
    echo "check_format: no clang-format (Debian package clang-format; packaging/setup.sh installs it)" >&2
    exit 1
fi
# The tracked C++ sources, or, outside a git checkout (an unpacked source archive), every one on disk.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
        'core/*.cpp' 'core/*.h' 'widgets/*.cpp' 'widgets/*.h' 'app/*.cpp' 'app/*.h' 'tests/*.cpp' 'tests/*.h')
else
    mapfile -t files < <(find core widgets app tests -name '*.cpp' -o -name '*.h' | sort)
fi
bad=()
for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    "$cf" --style=file "$f" | cmp -s - "$f" || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
    printf 'not formatted: %s\n' "${bad[@]}"
    echo "check_format: ${#bad[@]} of ${#files[@]} files differ from .clang-format ($("$cf" --version | sed 's/.*version //'));"
    echo "fix with: cmake --build build/test --target format   (or: $cf -i --style=file FILE)"
    exit 1
fi
echo "check_format: ${#files[@]} files, all formatted ($("$cf" --version | sed 's/.*version //'))"
