"""GPU checks of the runtime (skipped without CUDA): forecast steps never synchronise the host, and
their cost against a full step on a 140M-parameter FLUX.

Run on a GPU machine with ``pytest -m gpu -s tests/integration/test_runtime_gpu.py``.
"""

from __future__ import annotations

import time

import pytest
import torch
from runtime_support import make_host, run_config

import lesa_core
from lesa_core.assembly import assemble
from lesa_core.interfaces import Decision, ForecastInput, LinearPredictor
from lesa_core.interfaces.predictor import PredictorConfig
from lesa_core.testing import tiny

pytestmark = [pytest.mark.integration, pytest.mark.gpu]


def _drive(model: torch.nn.Module, kwargs: dict[str, object], n: int, decisions: list[Decision] | None = None,
           check_sync: bool = False) -> list[float]:
    """One trajectory of ``n`` steps on CUDA; returns per-step wall times (synchronised after each)."""
    times = []
    sigmas = torch.linspace(1.0, 1.0 / n, n).tolist()
    timesteps = torch.linspace(1.0, 1.0 / n, n, device="cuda")  # on the device, as a pipeline's
    with torch.no_grad():
        for i in range(n):
            step_kwargs = {**kwargs, "timestep": timesteps[i].expand(1).to(torch.bfloat16)}
            strict = check_sync and decisions is not None and decisions[i] is Decision.FORECAST
            torch.cuda.synchronize()
            start = time.perf_counter()
            with model.cache_context("cond", step_index=i, num_inference_steps=n, sigma=sigmas[i]):
                if strict:
                    torch.cuda.set_sync_debug_mode("error")
                try:
                    model(**step_kwargs)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return times


class _SyncFreeTaylor(LinearPredictor):
    """Taylor order 1 over step indices, with coefficients built by device ops only."""

    @property
    def history_size(self) -> int:
        return 2

    def coefficients(self, inputs: ForecastInput) -> tuple[torch.Tensor, torch.Tensor]:
        p = inputs.steps
        x = (inputs.step - p[-1]) / (p[-1] - p[-2])
        return torch.stack([-x, 1 + x]), torch.zeros_like(x)


@pytest.mark.parametrize("predictor", ["sync_free", "taylor"])
@pytest.mark.parametrize("tap", ["hidden", "normed", "output"])
def test_forecast_steps_never_synchronise(tap: str, predictor: str) -> None:
    """The runtime's forecast path (decision, history, forecast, substitution, head) reads nothing
    from the device: with the guard off, CUDA's sync debug mode raises on any synchronisation."""
    model = tiny.tiny_flux_transformer().to("cuda", torch.bfloat16)
    kwargs = tiny.transformer_inputs(model, height=8, width=8)
    kwargs = {k: v.to("cuda", torch.bfloat16) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    config = {**run_config(4, 2, tap=tap, force_full=()), "guard_non_finite": False}
    assembly = assemble(model, config, host=make_host())
    components = assembly.components()
    if predictor == "sync_free":
        components.predictor = _SyncFreeTaylor(PredictorConfig()).to("cuda")
    attachment = assembly.adapter.attach(components)
    try:
        decisions = assembly.plugins.make_policy().schedule(12)
        _drive(model, kwargs, 12, decisions, check_sync=True)
        stats = attachment.stats()["cond"]
    finally:
        attachment.remove()
    assert stats["forecast_steps"] == sum(d is Decision.FORECAST for d in decisions) > 0


def test_forecast_cost_on_a_140m_flux() -> None:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=8, num_single_layers=16, attention_head_dim=64,
        num_attention_heads=8, joint_attention_dim=64, pooled_projection_dim=64, guidance_embeds=False,
        axes_dims_rope=(16, 24, 24)).eval().to("cuda", torch.bfloat16)
    host = make_host()
    report = {}
    for tokens in (16, 64):  # 256 and 4096 image tokens
        kwargs = tiny.transformer_inputs(model, height=tokens, width=tokens, text_tokens=32)
        kwargs = {k: v.to("cuda", torch.bfloat16) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        _drive(model, kwargs, 6)  # warm-up
        vanilla = min(_drive(model, kwargs, 20))
        for tap in ("hidden", "output"):
            for guard in (True, False):
                config = {**run_config(7, 3, tap=tap), "guard_non_finite": guard}
                with lesa_core.attach(model, config, host=host) as handle:
                    _drive(model, kwargs, 28)
                    times = _drive(model, kwargs, 28)
                    decisions = handle.stats()["cond"]["decisions"]
                full = min(t for t, d in zip(times, decisions, strict=True) if d == "F")
                forecast = sorted(t for t, d in zip(times, decisions, strict=True) if d == "c")
                median = forecast[len(forecast) // 2]
                report[tokens * tokens, tap, guard] = (vanilla, full, median)
                print(f"tokens={tokens * tokens:5d} tap={tap:6s} guard={guard!s:5s} vanilla {vanilla * 1e3:7.3f} ms "
                      f"full {full * 1e3:7.3f} ms forecast {median * 1e3:6.3f} ms = {median / vanilla:.2%} of vanilla")
    for (tokens, tap, guard), (vanilla, full, median) in report.items():
        assert full < 1.15 * vanilla + 1e-3, (tokens, tap, guard)  # hooks cost ~nothing on full steps
        assert median < vanilla, (tokens, tap, guard)
