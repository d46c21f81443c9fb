#!/usr/bin/env bash
# Retrain the HunyuanVideo-class embedded model on one GPU, from the repository root:
#   bash tools/embedded/video/reproduce_gpu.sh [WORK_DIR]     (default .embedded-work/video-gpu)
# Unlike the CPU recipe (5-frame windows, then single frames), the VAE trains on whole 9-frame clips
# with a batch of 32, so that motion survives its temporal compression; then the transformer and both
# text encoders with a batch of 512 on a bank of 16,384 encoded videos, then once more from those weights
# at half the learning rate. VAE_STEPS / FLOW_STEPS / FLOW2_STEPS fix the step counts (default 2,731 /
# 4,817 / 3,238: the counts the shipped GPU runs fixed from their time budgets); set them empty with
# VAE_BUDGET / FLOW_BUDGET / FLOW2_BUDGET (seconds) to let the tool fix them from its own speed.
set -euo pipefail
W=${1:-.embedded-work/video-gpu}
PY=${PYTHON:-python3}
DEV=${DEVICE:-cuda}
VAE_STEPS=${VAE_STEPS-2731}
FLOW_STEPS=${FLOW_STEPS-4817}
FLOW2_STEPS=${FLOW2_STEPS-3238}
mkdir -p "$W"
[ -d "$W/skeleton" ] || $PY -m tools.embedded.video.build skeleton --out "$W/skeleton"
if [ ! -f "$W/vae/meta.json" ]; then
  $PY -m tools.embedded.video.train --device "$DEV" --skeleton "$W/skeleton" --out "$W/vae" \
      --vae-window 9 --vae-batch-size "${VAE_BATCH:-32}" ${VAE_STEPS:+--vae-steps "$VAE_STEPS"} \
      --budget-seconds "${VAE_BUDGET:-120}" --vae-fraction 1.0 --steps 0 --latent-bank 64
fi
if [ ! -f "$W/weights/meta.json" ]; then
  $PY -m tools.embedded.video.train --device "$DEV" --skeleton "$W/skeleton" --out "$W/weights" \
      --init-from "$W/vae" ${FLOW_STEPS:+--steps "$FLOW_STEPS"} --budget-seconds "${FLOW_BUDGET:-300}" \
      --batch-size "${FLOW_BATCH:-512}" --latent-bank "${LATENT_BANK:-16384}" --warmup 200 --ema 0.998 \
      --save-every 1000 --log-every 50
fi
# a second run from the first's EMA weights at half the learning rate (fresh optimiser, the same bank, new noise)
$PY -m tools.embedded.video.train --device "$DEV" --skeleton "$W/skeleton" --out "$W/weights2" \
    --init-from "$W/weights" ${FLOW2_STEPS:+--steps "$FLOW2_STEPS"} --budget-seconds "${FLOW2_BUDGET:-250}" \
    --batch-size "${FLOW_BATCH:-512}" --latent-bank "${LATENT_BANK:-16384}" --lr 5e-4 --warmup 200 \
    --ema 0.998 --save-every 1000 --log-every 50
[ -n "${NO_ASSEMBLE:-}" ] || $PY -m tools.embedded.video.build assemble --skeleton "$W/skeleton" \
    --weights "$W/weights2" --out "$W/pipeline"
