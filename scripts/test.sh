#!/usr/bin/env bash
# Run the test suite (the README's second command). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
