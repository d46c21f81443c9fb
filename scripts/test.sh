#!/usr/bin/env bash
# Set up from nothing (scripts/setup.sh) and run the test suite (slow and GPU tests excluded;
# pass pytest arguments to override, e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
if [ "$#" -eq 0 ]; then
  set -- -m "not slow and not gpu"
fi
exec .venv/bin/python -m pytest "$@"
