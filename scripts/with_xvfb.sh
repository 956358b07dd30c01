#!/usr/bin/env bash
# Run a command with a virtual X server (Xvfb) for the napari widget tests (`make test` runs
# pytest this way): start one on a free display unless DISPLAY is set already, run the command,
# stop it afterwards (also when the command fails or is interrupted). Where Xvfb is missing it is
# installed once with apt-get (as root on Debian/Ubuntu: xvfb and the Qt xcb libraries); where
# that cannot be done (BONE_SEG_XVFB=off) the command runs all the same and the GUI tests are
# skipped with the reason. Why a real X server and not QT_QPA_PLATFORM=offscreen: napari's canvas
# (vispy) needs OpenGL, which the offscreen platform does not give, so screenshots of the viewer
# (scripts/napari_screenshots.py) and the layer rendering are only right under X.
#   scripts/with_xvfb.sh .venv/bin/python -m pytest -q tests/gui
set -uo pipefail
pid=""
if [[ -z "${DISPLAY:-}" && "${BONE_SEG_XVFB:-on}" != off ]]; then
    if ! command -v Xvfb >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb \
            libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
            libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 \
            libegl1 libgl1 libdbus-1-3 libfontconfig1) >/dev/null 2>&1 \
            || echo "with_xvfb.sh: could not install Xvfb; the GUI tests will be skipped" >&2
    fi
    if command -v Xvfb >/dev/null; then
        for n in $(seq 90 130); do  # the first display number without a lock
            [[ -e /tmp/.X$n-lock ]] && continue
            Xvfb ":$n" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
            pid=$!
            sleep 1
            if kill -0 "$pid" 2>/dev/null; then export DISPLAY=":$n"; break; fi
            pid=""
        done
    fi
fi
cleanup() { if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$@"
