"""Peer oracle: LESA's runtime with Taylor order 1 on the ``output`` tap reproduces diffusers' own
TaylorSeer-Lite cache (``TaylorSeerCacheConfig(use_lite_mode=True)``) on the tiny FLUX pipeline.

diffusers' lite mode forecasts only ``proj_out`` (whose output is FLUX's model output) with
finite differences over step indices, and computes when ``step < disable_cache_before_step`` or
``(step − before − 1) % cache_interval == 0``: the ``interval`` policy with ``warmup = before``,
``phase = before + 1``, no forced steps.
"""

from __future__ import annotations

import pytest
import torch
from runtime_support import FAMILIES, make_host

import lesa_core

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


@pytest.mark.parametrize(("steps", "interval", "before"), [(28, 5, 3), (50, 7, 3), (20, 4, 2)])
def test_matches_diffusers_taylorseer_lite(steps: int, interval: int, before: int) -> None:
    from diffusers import TaylorSeerCacheConfig

    family = FAMILIES["flux"]
    pipe = family.pipeline()
    vanilla = family.call(pipe, steps)

    pipe.transformer.enable_cache(TaylorSeerCacheConfig(
        cache_interval=interval, disable_cache_before_step=before, max_order=1,
        taylor_factors_dtype=torch.float32, use_lite_mode=True))
    peer = family.call(pipe, steps)
    pipe.transformer.disable_cache()
    assert torch.equal(family.call(pipe, steps), vanilla)

    config = {"tap": "output", "predictor": {"name": "taylor", "order": 1, "spacing": "steps"},
              "router": {"name": "threshold", "boundaries": []},
              "policy": {"name": "interval", "interval": interval, "warmup": before, "force_full": [],
                         "phase": before + 1}}
    with lesa_core.attach(pipe, config, host=make_host()) as handle:
        ours = family.call(pipe, steps)
        stats = handle.stats()["cond"]

    expected = [s for s in range(steps) if s < before or (s - before - 1) % interval == 0]
    assert [i for i, c in enumerate(stats["decisions"]) if c == "F"] == expected
    assert not torch.equal(peer, vanilla)  # the peer really forecast something
    rel = (ours - peer).norm() / peer.norm()
    assert rel < 1e-4, float(rel)
