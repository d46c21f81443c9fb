"""LESA under diffusers' context parallelism (2 processes, gloo, CPU; see ``cp_worker.py``).

Each rank holds a shard of the image tokens; the runtime keeps and forecasts the shard of the tap
(predictors are token-wise: no communication of its own), and the policy's decision depends on the
step index only, so every rank takes the same full and forecast steps and the model's own collectives
stay matched. The result equals the single-process LESA run, and each rank's cache holds half the
history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("cp_worker.py")


def test_lesa_under_ulysses_context_parallel_matches_one_process(tmp_path: Path) -> None:
    diffusers = pytest.importorskip("diffusers")
    if not hasattr(diffusers, "ContextParallelConfig"):
        pytest.skip(f"diffusers {diffusers.__version__} has no ContextParallelConfig")
    import cp_worker  # beside this file (pytest's rootdir-relative import path, as runtime_support)

    from lesa_core import attach
    from lesa_core.testing.tiny import tiny_flux_pipeline

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(WORKER), str(tmp_path)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-6000:]

    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    full = pipe(**cp_worker.CALL, generator=cp_worker.generators()).images
    torch.manual_seed(0)
    with attach(pipe, cp_worker.CONFIG) as handle:
        reference = pipe(**cp_worker.CALL, generator=cp_worker.generators()).images
        (one,) = handle.stats().values()
    assert one["decisions"] == "FFcccFcccFcc"
    assert float((reference - full).abs().max()) > 1e-3  # the forecasts changed the result: not a no-op

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for order in ("cp_then_lesa", "lesa_then_cp"):
        for r, stats in enumerate(ranks):
            (cp,) = stats[order].values()
            assert cp["decisions"] == one["decisions"], (order, r)  # same steps on every rank
            assert cp["cache_bytes"] * 2 == one["cache_bytes"], (order, r)  # each rank keeps its shard
            latents = torch.load(tmp_path / f"latents_{order}_rank{r}.pt", weights_only=True)
            rel = float((latents - reference).norm() / reference.norm())
            assert rel < 1e-5, (order, r, rel)
