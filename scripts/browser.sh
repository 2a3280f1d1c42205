#!/usr/bin/env bash
# Makes sure Debian's Chromium and ChromeDriver are installed, for the live board's browser test
# (client/tests/board.rs). Installs the packages `chromium` and `chromium-driver` with apt-get
# when either is missing (needs root); nothing is downloaded from anywhere else.
#
#   scripts/browser.sh install
set -euo pipefail

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have; then
  echo "browser.sh: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser.sh: no chromium/chromedriver; install them (Debian: apt-get install chromium chromium-driver)" >&2
  exit 1
fi
echo "browser.sh: installing Chromium (apt-get install chromium chromium-driver)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
if ! have; then
  echo "browser.sh: Chromium could not be installed" >&2
  exit 1
fi
echo "browser.sh: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
