#!/usr/bin/env bash
# Retrain the HunyuanVideo-class embedded model exactly as shipped (CPU, one torch thread), from the
# repository root:  bash tools/embedded/video/reproduce.sh [WORK_DIR]   (default .embedded-work/video)
# The step counts are the ones the shipped run fixed from its time budget (docs/embedded-model.md).
set -euo pipefail
W=${1:-.embedded-work/video}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$W"
$PY -m tools.embedded.video.build skeleton --out "$W/skeleton"
# 1. VAE on 5-frame windows: 390 steps, batch 8, lr 1e-3 (cosine), foreground-weighted L1 + MSE
$PY -m tools.embedded.video.train --skeleton "$W/skeleton" --out "$W/vae-a" --vae-steps 390 --steps 0 \
    --latent-bank 64
# 2. VAE further on single frames (a fifth of the cost per sample): 800 steps, batch 16
$PY -m tools.embedded.video.train --skeleton "$W/skeleton" --out "$W/vae-b" --init-from "$W/vae-a" \
    --continue-vae --vae-window 1 --vae-batch-size 16 --vae-steps 800 --steps 0 --latent-bank 64
# 3. transformer + both text encoders on the frozen VAE (latent bank of 4096 training videos)
$PY -m tools.embedded.video.train --skeleton "$W/skeleton" --out "$W/weights" --init-from "$W/vae-b" \
    --steps "${FLOW_STEPS:-1534}"
$PY -m tools.embedded.video.build assemble --skeleton "$W/skeleton" --weights "$W/weights" --out "$W/pipeline"
