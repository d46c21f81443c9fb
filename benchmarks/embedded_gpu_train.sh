#!/usr/bin/env bash
# One-shot GPU training job for the embedded default model (issue #4).
#
# Run from the repository root on a CUDA machine that has torch, transformers and safetensors, with
#   * a diffusers 0.42.1 wheel in .whl/ (the offline GPU image has no diffusers), and
#   * the skeleton written by `python -m tools.embedded.flux.build skeleton --out .embedded-work/skeleton`
#     (it needs open-clip-torch at build time, tools/embedded/requirements.txt, which is why it is built
#     beforehand and carried).
# The training tool is tools/embedded/flux/train.py; it imports lesa_embedded.flux from embedded/ of
# this checkout (put on PYTHONPATH below), whose package imports neither lesa_core nor pydantic.
# Writes the trained weights (fp16 safetensors, one file per network), meta.json and losses.csv to
# $OUT/weights and the console log to $OUT/train.log.  Re-assemble the pipeline folder afterwards with
#   python -m tools.embedded.flux.build assemble --skeleton .embedded-work/skeleton \
#       --weights <OUT>/weights --out embedded/lesa_embedded/flux/pipeline
# AMP: bf16 autocast crashed in the first flow backward on the H200 image (torch 2.11+cu130,
# CUBLAS_STATUS_EXECUTION_FAILED in a bf16 cublasGemmEx, twice), so the default is AMP=fp32 (TF32
# matmuls).  With AMP=bf16, a crash in stage 2 restarts once in fp32 from the saved VAE with the
# time that is left.
#
# Environment: OUT (output folder, default ./embedded-gpu-out), BUDGET (training seconds, default 330),
# SEED (default 0), SKELETON (default .embedded-work/skeleton), EVAL (held-out captions to sample, 302),
# AMP (fp32 or bf16, default fp32).
set -uo pipefail
OUT=${OUT:-$PWD/embedded-gpu-out}
BUDGET=${BUDGET:-330}
SEED=${SEED:-0}
SKELETON=${SKELETON:-.embedded-work/skeleton}
EVAL=${EVAL:-302}
AMP=${AMP:-fp32}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/train.log"
export PYTHONPATH=$PWD/embedded${PYTHONPATH:+:$PYTHONPATH}
train() {
  python3 -m tools.embedded.flux.train "$@" 2>&1 | tee -a "$OUT/train.log"
}
START=$SECONDS
train --skeleton "$SKELETON" --out "$OUT/weights" --device cuda --budget-seconds "$BUDGET" --seed "$SEED" \
  --amp "$AMP" --eval-heldout "$EVAL"
RC=$?
if [ $RC -ne 0 ] && [ "$AMP" != fp32 ] && [ -f "$OUT/weights/vae.safetensors" ] && ! grep -q '"saved_tag": "final"' "$OUT/weights/meta.json"; then
  LEFT=$(( BUDGET - (SECONDS - START) - 15 ))
  echo "=== stage 2 failed (rc $RC): restarting in fp32 from the saved VAE with ${LEFT}s" | tee -a "$OUT/train.log"
  train --skeleton "$SKELETON" --out "$OUT/weights" --device cuda --budget-seconds "$LEFT" --seed "$SEED" \
    --amp fp32 --init-from "$OUT/weights" --eval-heldout "$EVAL"
  RC=$?
fi
exit $RC
