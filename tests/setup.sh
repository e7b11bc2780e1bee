#!/usr/bin/env bash
# Installs what the tests need: Debian's Fashion-MNIST files and Chromium (when apt is there),
# and the Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
python -m pip install -q -r requirements-dev.txt
