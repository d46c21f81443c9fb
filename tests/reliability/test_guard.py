"""The non-finite guard: a forecast with a NaN or Inf falls back to a full step for that step only,
counted in ``stats()['fallback_steps']``, logged once per attachment, and the image is exactly that of a
run in which that step was scheduled as a full step."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from reliability_support import CALL, expect_behaviour

import lesa_core
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration

STEPS = 8
# interval 3, warm-up 2: steps 0, 1, 4, 7 compute; 2, 3, 5, 6 forecast
POLICY = {"name": "interval", "interval": 3, "warmup": 2, "force_full": []}


def _config(tap: str, force_full: list[int] | None = None, order: int = 1) -> dict[str, Any]:
    return {"tap": tap, "predictor": {"name": "taylor", "order": order},
            "router": {"name": "threshold", "boundaries": []},
            "policy": {**POLICY, "force_full": force_full or []}}


def _poison(bad_calls: set[int], value: float) -> Any:
    """A forward hook on the predictor: its n-th forecast (0-based) in ``bad_calls`` gets one bad element."""
    calls = {"n": -1}

    def hook(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] in bad_calls:
            output = output.clone()
            output.view(-1)[7] = value
        return output

    return hook


def _image(pipe: Any, seed: int = 0) -> torch.Tensor:
    """The decoded image (the VAE runs: the comparison is on what the user sees)."""
    return pipe(prompt="a red circle", num_inference_steps=STEPS, output_type="pt",
                generator=torch.Generator().manual_seed(seed), **CALL).images


@pytest.mark.parametrize("tap", ["hidden", "normed", "output"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_one_non_finite_forecast_becomes_that_full_step(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                        host: PluginHost, caplog: pytest.LogCaptureFixture,
                                                        tap: str, value: float) -> None:
    def check() -> list[str]:
        with lesa_core.attach(flux_pipe, _config(tap, force_full=[3]), host=host) as reference:
            expected = _image(flux_pipe)
            ref_stats = reference.stats()["cond"]
        with caplog.at_level(logging.WARNING, logger="lesa"), \
                lesa_core.attach(flux_pipe, _config(tap), host=host) as handle:
            handle.predictor.register_forward_hook(_poison({1, 4}, value))  # step 3; step 2 of the 2nd call
            got = _image(flux_pipe)
            first = handle.stats()["cond"]
            _image(flux_pipe)
            second = handle.stats()["cond"]
        problems = []
        if ref_stats["decisions"] != "FFcFFccF":
            problems.append(f"reference decisions {ref_stats['decisions']!r}")
        if not torch.equal(got, expected):
            problems.append("the image differs from the run where step 3 was computed")
        if (first["decisions"], first["fallback_steps"], first["full_steps"], first["forecast_steps"]) != \
                ("FFcxFccF", 1, 5, 3):
            problems.append(f"first call stats {first}")
        if (second["decisions"], second["fallback_steps"]) != ("FFxcFccF", 1):
            problems.append(f"second call stats {second}")
        logged = [r for r in caplog.records if "non-finite" in r.getMessage()]
        if len(logged) != 1 or "step 3" not in logged[0].getMessage() or "fallback_steps" not in logged[0].getMessage():
            problems.append(f"logged {[r.getMessage() for r in logged]}")
        return problems

    expect_behaviour(f"guard-{tap}-{'nan' if value != value else 'inf'}", "guard", check,
                     model=flux_pipe.transformer, inputs=flux_inputs)


def test_guard_on_both_cfg_contexts(host: PluginHost) -> None:
    """Qwen-Image with true CFG: a bad forecast in the uncond context falls back there only."""
    from lesa_core.testing.tiny import tiny_qwen_image_pipeline, transformer_inputs

    pipe = tiny_qwen_image_pipeline()
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a red circle", negative_prompt="blurry", true_cfg_scale=4.0, max_sequence_length=16,
                  num_inference_steps=STEPS, height=32, width=32, output_type="latent")

    def check() -> list[str]:
        with lesa_core.attach(pipe, _config("hidden"), host=host) as handle:
            # calls alternate cond/uncond: forecast calls 0,1 = step 2 (cond, uncond); 2,3 = step 3
            handle.predictor.register_forward_hook(_poison({3}, float("nan")))
            got = pipe(**kwargs, generator=torch.Generator().manual_seed(0))[0]
            stats = handle.stats()
        problems = []
        if (stats["cond"]["fallback_steps"], stats["uncond"]["fallback_steps"]) != (0, 1):
            problems.append(f"stats {stats}")
        if stats["uncond"]["decisions"] != "FFcxFccF" or stats["cond"]["decisions"] != "FFccFccF":
            problems.append(f"decisions {stats}")
        if not torch.isfinite(got).all():
            problems.append("non-finite output")
        return problems

    model = pipe.transformer
    expect_behaviour("guard-qwen-uncond-only", "guard", check, model=model, inputs=transformer_inputs(model))
