#!/usr/bin/env bash
# Retrain the Qwen-Image-class embedded model exactly as shipped (CPU, one torch thread), from the
# repository root:  bash tools/embedded/qwen/reproduce.sh [WORK_DIR]   (default .embedded-work/qwen)
# The step counts are the ones the shipped run fixed from its time budget (docs/embedded-model.md).
set -euo pipefail
W=${1:-.embedded-work/qwen}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$W"
$PY -m tools.embedded.qwen.build skeleton --out "$W/skeleton"
# 1. VAE: 504 steps, batch 16, lr 2e-3 (cosine)
$PY -m tools.embedded.qwen.train --skeleton "$W/skeleton" --out "$W/vae1" --vae-steps 504 --steps 0 \
    --latent-bank 256
# 2. VAE, trained further: 1200 steps, batch 8
$PY -m tools.embedded.qwen.train --skeleton "$W/skeleton" --out "$W/vae2" --init-from "$W/vae1" \
    --continue-vae --vae-steps 1200 --vae-batch-size 8 --steps 0 --latent-bank 256
# 3. transformer + text encoder on the frozen VAE
$PY -m tools.embedded.qwen.train --skeleton "$W/skeleton" --out "$W/weights" --init-from "$W/vae2" \
    --steps "${FLOW_STEPS:-1086}" --latent-bank 8192
$PY -m tools.embedded.qwen.build assemble --skeleton "$W/skeleton" --weights "$W/weights" --out "$W/pipeline"
