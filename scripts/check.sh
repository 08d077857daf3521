#!/usr/bin/env bash
# The check command: formatting, lint, types.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
