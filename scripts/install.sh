#!/usr/bin/env bash
# Install nanoml for development into .venv (the README's first command).
# As root on Debian/Ubuntu it also installs the system packages the C++ tests
# use (cross compiler, clang with sanitizers); elsewhere those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi clang libclang-rt-14-dev g++ espeak-ng sox"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && { ! command -v arm-none-eabi-g++ >/dev/null || ! command -v espeak-ng >/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y --no-install-recommends $PKGS
elif ! command -v arm-none-eabi-g++ >/dev/null; then
    echo "note: arm-none-eabi-g++ not found; the firmware compile tests will skip" >&2
    echo "      (Debian/Ubuntu: sudo apt-get install $PKGS)" >&2
fi
PY=${PYTHON:-python3}
"$PY" -m venv .venv
.venv/bin/python -m pip install --upgrade pip
.venv/bin/python -m pip install -e '.[convert,test]'
echo "installed: $(pwd)/.venv/bin/nanoml"
