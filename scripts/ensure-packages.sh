#!/usr/bin/env bash
# Installs the Debian packages the tests talk to, when missing: prometheus (+ promtool), redis-server
# (the tests start their own instances on free ports; nothing is left running) and chromium (the review
# page's browser tests drive it through Playwright's Python API; Playwright's own download cannot work).
# Called by scripts/test.sh (the README's test command). Idempotent; needs root or sudo to install.
set -euo pipefail

missing=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "ensure-packages: installing the Debian packages ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt run (an unattended upgrade, a second test run) holds dpkg's lock: wait for it, not fail.
WAIT_LOCK=(-o DPkg::Lock::Timeout=300)
$SUDO apt-get "${WAIT_LOCK[@]}" update -qq
# --no-install-recommends: the exporters and web assets prometheus recommends are not needed here.
$SUDO apt-get "${WAIT_LOCK[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system services where an init system runs; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then
    for service in prometheus redis-server; do
        if systemctl is-active --quiet "$service" 2>/dev/null; then
            $SUDO systemctl stop "$service" || true
        fi
    done
fi
promtool --version | head -n 1 >&2
