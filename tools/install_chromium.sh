#!/bin/sh
# Install Debian's chromium for the browser test (tests/test_browser.py).
# Does nothing when $CHROMIUM already exists. Playwright drives this system
# browser; it never downloads a browser of its own.
set -eu
CHROMIUM="${1:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no Chromium at $CHROMIUM and no apt-get to install it." >&2
    echo "Install Chromium and run 'make test CHROMIUM=/path/to/chromium'," >&2
    echo "or run 'make test BROWSER=0' to skip the browser test." >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "error: installing chromium needs root; run 'apt-get install -y chromium' as root," >&2
    echo "or run 'make test BROWSER=0' to skip the browser test." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have stale package lists: update once if the first try fails.
$SUDO apt-get install -y --no-install-recommends chromium \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium; }
