#!/usr/bin/env bash
# Install the browser the browser tests drive (tests/browser/): Debian's chromium, at
# /usr/bin/chromium, driven by the Python playwright package (never a downloaded
# browser build: no `playwright install`). Does nothing when it is there already.
# Called by .ci/run; needs root (or sudo) and apt. Bounded: gives up after 10 minutes.
set -euo pipefail
browser=/usr/bin/chromium
if [ -x "$browser" ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo > /dev/null; then
        echo "installing chromium needs root: run  apt-get install -y chromium  as root" >&2
        exit 1
    fi
    sudo="sudo -n"
fi
echo "installing Debian's chromium for the browser tests (apt-get, quiet)" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if ! { timeout 300 $sudo apt-get update -qq \
       && timeout 600 $sudo apt-get install -y -qq --no-install-recommends \
              -o Dpkg::Use-Pty=0 chromium fonts-dejavu-core; } > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "installing chromium failed (see above): apt-get install -y chromium" >&2
    exit 1
fi
rm -f "$log"
"$browser" --version >&2
