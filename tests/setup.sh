#!/usr/bin/env bash
# Installs what the tests need: Debian's Fashion-MNIST files (when apt is there) and the Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python -m pip install -q -r requirements-dev.txt
