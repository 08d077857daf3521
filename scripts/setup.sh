#!/usr/bin/env bash
# Create or update the virtualenv at .venv with railguard and everything it needs (idempotent: a second run
# with an unchanged pyproject.toml takes a second). Source it or run it; other scripts call it first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${RAILGUARD_EXTRAS:-local,classifiers,steering,train,eval,dev}
stamp=.venv/.railguard-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing railguard[$EXTRAS] into .venv (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned to the CPU build (torch==2.13.0); an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  if [[ ",$EXTRAS," == *",eval,"* ]]; then
    # NLTK's punkt_tab sentence model for lm-eval's IFEval checkers (NLTK cannot download it here):
    # llama-index-core ships the files; only they are used, so none of its dependencies is needed.
    .venv/bin/python -m pip install -q --no-deps "llama-index-core==0.14.25"
  fi
  echo "$want" > "$stamp"
fi
