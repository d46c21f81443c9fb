#!/usr/bin/env bash
# Set up from nothing (scripts/setup.sh) and run the main job on the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/lesa plugins "$@"
