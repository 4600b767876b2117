#!/usr/bin/env bash
# Install nanoml for development into .venv (the README's first command).
# System packages for the C++ tests (Debian/Ubuntu): gcc-arm-none-eabi
# libnewlib-arm-none-eabi clang libclang-rt-14-dev g++ (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --upgrade pip
.venv/bin/python -m pip install -e '.[convert,test]'
echo "installed: $(pwd)/.venv/bin/nanoml"
