#!/usr/bin/env bash
# Set up a development environment from nothing, in ./.venv of this checkout:
#   torch first and pinned (LESA_TORCH, default torch==2.13.0: the CPU build on the team's machines;
#   pip must never resolve a bare `torch`, which would pull a multi-GB CUDA build), then the project's
#   distributions (lesa-core, lesa-adapters, lesa-predictors, lesa-schedulers, lesa-workflows, lesa-embedded) and the
#   example plugins, all editable. Safe to re-run: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${LESA_TORCH:-torch==2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "==> installing $TORCH_SPEC"
  pip install -q "$TORCH_SPEC"
fi
echo "==> installing lesa-core, lesa-adapters, lesa-predictors, lesa-schedulers, lesa-workflows, lesa-embedded and the examples (editable)"
examples=()
for dir in docs/examples/*/; do
  [ -f "$dir/pyproject.toml" ] && examples+=(-e "$dir")
done
pip install -q -e ".[dev,diffusers]" -e ./predictors -e ./schedulers -e ./adapters -e ./workflows -e ./embedded "${examples[@]}"
echo "==> ready: $(.venv/bin/python -c 'import torch, diffusers; print("torch", torch.__version__, "| diffusers", diffusers.__version__)')"
