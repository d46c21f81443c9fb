#!/usr/bin/env bash
# GPU half of the speed benchmark (issue #6), for an offline H100/H200 with the image's CUDA torch.
# Run from the repository root:  bash benchmarks/gpu_speed.sh [--budget S] [--methods a,b,...] [--tiny]
#
# Needs .whl/ (git-ignored) with the wheels the image lacks (diffusers, pydantic, pydantic-core,
# annotated-types, typing-inspection, importlib_metadata, lazy-importer; cache-dit optional) and the
# project's own wheels (for their `lesa` entry points); see docs/benchmarks.md. The working tree's
# sources are put first on PYTHONPATH, so the code that runs is the checkout's even if a project wheel
# is older. Results (speed.json, details.json, gpu_speed.log, console.log) go to $OUT.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-speed-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SITE=${SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
export PYTHONPATH="$PWD:$PWD/adapters:$PWD/predictors:$PWD/schedulers:$SITE${PYTHONPATH:+:$PYTHONPATH}"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader; } 2>&1 | tee -a "$OUT/gpu_speed.log"
timeout "${TIMEOUT:-330}" python3 benchmarks/gpu_speed.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/console.log"
exit "${PIPESTATUS[0]}"
