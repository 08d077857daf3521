#!/usr/bin/env bash
# Set up .venv and the services the tests talk to (a real Prometheus from Debian's package, Redis on
# 127.0.0.1:6379 if none answers), run the checks (ruff format, ruff check, mypy), then the whole
# test suite. Arguments go to pytest, e.g. `./scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
./scripts/ensure-prometheus.sh
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && command -v redis-server >/dev/null 2>&1; then
  echo "test: starting redis-server on 127.0.0.1:6379" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
./scripts/check.sh
exec .venv/bin/python -m pytest "$@"
