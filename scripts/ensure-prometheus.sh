#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian package `prometheus`) when promtool is missing.
# Called by scripts/test.sh (the README's test command) before the tests that need a real Prometheus.
# Idempotent; needs root or sudo.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "ensure-prometheus: installing the Debian package prometheus" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt run (an unattended upgrade, a second test run) holds dpkg's lock: wait for it, not fail.
WAIT_LOCK=(-o DPkg::Lock::Timeout=300)
$SUDO apt-get "${WAIT_LOCK[@]}" update -qq
# --no-install-recommends: the exporters and web assets it recommends are not needed here.
$SUDO apt-get "${WAIT_LOCK[@]}" install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service where an init system runs; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl stop prometheus || true
fi
promtool --version | head -n 1 >&2
