#!/usr/bin/env bash
# Set up from nothing (scripts/setup.sh) and run the main job on the embedded default model:
# collect trajectories, train LESA (KAN, stage-aware) and the MLP ablation, then compare full compute,
# lesa, mlp, Taylor 1/2 and reuse on held-out prompts. Report in demo-out/ (or pass --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/lesa demo --out demo-out "$@"
