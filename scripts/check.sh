#!/usr/bin/env bash
# The check command: formatting, lint, types (Python sources only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/ruff format --check --exclude '*.md' .
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/mypy grafana/generate.py  # the dashboards' generator, a script outside the packages
