#!/usr/bin/env bash
# Set up .venv, garak's own .garak-venv (scripts/garak-setup.sh) and the Debian packages the tests talk to
# (Prometheus, redis-server, chromium: the tests start their own on free ports), run the checks (ruff
# format, ruff check, mypy), then the whole test suite.
# Arguments go to pytest, e.g. `./scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
./scripts/ensure-packages.sh
./scripts/garak-setup.sh
./scripts/check.sh
exec .venv/bin/python -m pytest "$@"
