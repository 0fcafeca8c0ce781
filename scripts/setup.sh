#!/usr/bin/env bash
# Create .venv in the project root with napari-unetseg, napari + PyQt6, PyTorch and the test tools.
# On Debian-like machines run as root it also installs the system libraries Qt needs headless.
set -euo pipefail
cd "$(dirname "$0")/.."

qt_libs="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libxkbcommon-x11-0
  libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libdbus-1-3 libfontconfig1 fonts-dejavu-core"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # shellcheck disable=SC2086
  if ! dpkg -s $qt_libs >/dev/null 2>&1; then
    echo "setup: installing system libraries for Qt (Xvfb, xcb, Mesa)" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $qt_libs >/dev/null
  fi
fi

PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check uv
# uv does not read pip.conf: hand it pip's find-links folder (where a local CPU torch wheel may be).
links=$("$PY" -m pip config get global.find-links 2>/dev/null || true)
if [ -n "$links" ]; then export UV_FIND_LINKS="$links"; fi
# Guard: where the local CPU wheel exists, never let a resolver pull the multi-GB CUDA build.
if [ -n "$links" ] && ls "$links"/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
  export UV_CONSTRAINT="$PWD/.ci/constraints.txt"
fi
uv venv -q --allow-existing -p "$PY" .venv
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (CI), every process would
# otherwise compile torch and napari from source at import (~6 s each, holding the GIL).
uv pip install -q --compile-bytecode -p .venv/bin/python "torch==2.13.0" -e ".[testing]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
