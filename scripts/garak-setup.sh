#!/usr/bin/env bash
# NVIDIA garak in a virtualenv of its own (.garak-venv): its dependencies pin versions railguard's do not
# want, so it never shares .venv. torch is held to the CPU wheel railguard uses (an unpinned torch pulls a
# multi-GB CUDA build). Idempotent: a second run with the same version takes a second. Used by
# `railguard eval garak` and its CI-sized test; scripts/test.sh calls it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
GARAK_VERSION=0.17.1
TORCH_VERSION=2.13.0
stamp=.garak-venv/.railguard-installed
want="garak==$GARAK_VERSION torch==$TORCH_VERSION"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
echo "garak-setup: installing garak $GARAK_VERSION into .garak-venv (a few minutes the first time)" >&2
[ -x .garak-venv/bin/python ] || "$PYTHON" -m venv .garak-venv
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" > "$constraints"
.garak-venv/bin/python -m pip install -q -c "$constraints" "garak==$GARAK_VERSION"
echo "$want" > "$stamp"
