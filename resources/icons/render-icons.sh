#!/usr/bin/env bash
# Renders resources/icons/ladderbench.svg into the hicolor PNGs that are committed beside it
# (hicolor/<N>x<N>/apps/<app id>.png, N = 16 32 48 64 128 256). Run it after changing the SVG:
#   bash resources/icons/render-icons.sh
# Needs rsvg-convert (Debian librsvg2-bin, in packaging/setup.sh's packages).
set -euo pipefail
readonly APP_ID=io.github.ladderbench.LadderBench
readonly SIZES=(16 32 48 64 128 256)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v rsvg-convert >/dev/null || { echo "render-icons.sh: rsvg-convert is missing (apt-get install librsvg2-bin)" >&2; exit 1; }
for n in "${SIZES[@]}"; do
    out="$here/hicolor/${n}x${n}/apps/$APP_ID.png"
    mkdir -p "$(dirname "$out")"
    rsvg-convert --width "$n" --height "$n" --format png "$here/ladderbench.svg" --output "$out"
    echo "$out"
done
