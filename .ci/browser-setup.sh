#!/usr/bin/env bash
# Installs Debian's chromium for the report's end-to-end browser test (tests/test_report_browser.py),
# unless one is already on PATH. Called by .ci/run; safe to run again.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "browser-setup: $(chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
echo "browser-setup: installed $(chromium --version 2>/dev/null || echo chromium)"
