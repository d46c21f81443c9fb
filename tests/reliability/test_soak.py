"""Soak: 1000 sequential calls through one attached tiny Qwen-Image pipeline with mixed resolutions, step
counts and true CFG on/off (one or two cache contexts), with an occasional call aborted half-way.
Every completed call must equal what a freshly attached pipeline gives for the same parameters
(fresh results are cached per parameter set, so this is 1000 + a few dozen runs, not 2000), and the
runtime's state must stay bounded.

Run with ``pytest -m slow tests/reliability/test_soak.py`` (a few minutes on two cores).
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
import torch
from reliability_support import Outcome, record

import lesa_core
from lesa_adapters import LEADER_HOOK, hook_states
from lesa_core.plugins import PluginHost

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CALLS = 1000
SIZES = [(32, 32), (48, 48), (32, 48)]
STEPS = [4, 5, 6, 8]
CONFIG = {"predictor": {"name": "taylor", "order": 2}, "router": {"name": "threshold", "boundaries": [0.6]},
          "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []}}


class _Abort(Exception):
    pass


def _call(pipe: Any, size: tuple[int, int], steps: int, cfg: bool, seed: int, abort_at: int | None = None,
          ) -> torch.Tensor:
    def callback(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if i == abort_at:
            raise _Abort
        return kwargs

    extra: dict[str, Any] = {"negative_prompt": "blurry", "true_cfg_scale": 4.0} if cfg else {"true_cfg_scale": 1.0}
    return pipe(prompt="a red circle", height=size[0], width=size[1], num_inference_steps=steps,
                max_sequence_length=16, output_type="latent", generator=torch.Generator().manual_seed(seed),
                callback_on_step_end=callback if abort_at is not None else None, **extra)[0]


def test_a_thousand_mixed_calls_equal_fresh_attachments(host: PluginHost) -> None:
    from lesa_core.testing.tiny import tiny_qwen_image_pipeline

    pipe = tiny_qwen_image_pipeline()
    fresh_pipe = tiny_qwen_image_pipeline()  # the same weights; attached anew for every reference
    for p in (pipe, fresh_pipe):
        p.set_progress_bar_config(disable=True)
    fresh: dict[tuple[Any, ...], torch.Tensor] = {}
    rng = random.Random(2024)
    handle = lesa_core.attach(pipe, CONFIG, host=host)
    attachment = handle._attachment
    mismatches: list[tuple[int, tuple[Any, ...]]] = []
    aborted = 0
    started = time.perf_counter()
    try:
        for n in range(CALLS):
            key = (rng.choice(SIZES), rng.choice(STEPS), rng.random() < 0.5, rng.randrange(2))
            if n % 97 == 50:  # a call that dies half-way (an exception in the step callback)
                with pytest.raises(_Abort):
                    _call(pipe, *key, abort_at=rng.randrange(key[1] - 1))
                aborted += 1
                continue
            out = _call(pipe, *key)
            if key not in fresh:
                with lesa_core.attach(fresh_pipe, CONFIG, host=host):
                    fresh[key] = _call(fresh_pipe, *key)
            if not torch.equal(out, fresh[key]):
                mismatches.append((n, key))
            stats = handle.stats()
            assert set(stats) <= {"cond", "uncond"} and len(stats["cond"]["decisions"]) == key[1]
            # bounded state: one per context, at most K = order + 1 taps each
            states = list(hook_states(pipe.transformer, LEADER_HOOK))
            assert len(states) <= 2 and all(len(s.features) <= 3 for s in states)
            assert len(attachment._finished) <= 2
    finally:
        handle.remove()
    seconds = time.perf_counter() - started
    record(Outcome("soak-1000-calls", "soak", False, not mismatches, [], []))
    assert not mismatches, f"{len(mismatches)} of {CALLS - aborted} calls differ from a fresh attachment: {mismatches[:5]}"
    assert len(fresh) >= 30 and aborted >= 10
    print(f"soak: {CALLS} calls ({aborted} aborted), {len(fresh)} parameter sets, {seconds:.0f} s")
