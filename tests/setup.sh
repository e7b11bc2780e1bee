#!/usr/bin/env bash
# Installs what the tests need into .venv (a virtual environment: a stock Debian or Ubuntu Python refuses
# system-wide pip installs, PEP 668): Debian's Fashion-MNIST files, Chromium and python3-venv when apt
# is there, then the Python packages. Run the tests with .venv/bin/python -m pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null || missing+=(chromium)
python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt -r requirements-cluster.txt
