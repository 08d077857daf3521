#!/usr/bin/env bash
# Set up .venv, prepare the models (once; cached), and start the gateway. Arguments go to `railguard serve`,
# e.g. `./scripts/serve.sh --upstream http://127.0.0.1:8000/v1` or `./scripts/serve.sh --config my.yaml`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
exec .venv/bin/railguard serve "$@"
