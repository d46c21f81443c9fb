"""Conformance tests every :class:`~lesa_core.interfaces.Predictor` must pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lesa_core.bundle import BundleMetadata, load_weights, read_metadata, save_bundle
from lesa_core.interfaces import ForecastInput, Predictor

PredictorFactory = Callable[[], Predictor]


def make_forecast_input(
    n: int, *, shape: tuple[int, ...] = (2, 6, 8), dtype: torch.dtype = torch.float32, seed: int = 0,
    num_steps: int = 50, step: int = 10,
) -> ForecastInput:
    """A synthetic history of ``n`` entries ending before ``step`` on a uniform 50-step schedule."""
    gen = torch.Generator().manual_seed(seed)
    schedule = torch.linspace(1.0, 0.0, num_steps + 1)
    steps = torch.arange(step - n, step, dtype=torch.float32)
    base = torch.randn(shape, generator=gen)
    drift = torch.randn(shape, generator=gen)
    features = [(base + drift * schedule[int(s)]).to(dtype) for s in steps]
    return ForecastInput(
        features=features,
        times=schedule[steps.long()].clone(),
        steps=steps,
        t=schedule[step].clone(),
        step=torch.tensor(float(step)),
    )


class PredictorConformance:
    """Provide a ``predictor_factory`` fixture returning a fresh predictor (same config each call)."""

    def _inputs(self, predictor: Predictor, dtype: torch.dtype = torch.float32, seed: int = 0) -> ForecastInput:
        channels = predictor.context.channels or 8
        return make_forecast_input(predictor.history_size, shape=(2, 6, channels), dtype=dtype, seed=seed)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_keeps_shape_and_dtype(self, predictor_factory: PredictorFactory, dtype: torch.dtype) -> None:
        predictor = predictor_factory().eval()
        inputs = self._inputs(predictor, dtype)
        with torch.no_grad():
            out = predictor(inputs)
        assert out.shape == inputs.features[-1].shape
        assert out.dtype == dtype
        assert torch.isfinite(out.float()).all()

    def test_deterministic(self, predictor_factory: PredictorFactory) -> None:
        predictor = predictor_factory().eval()
        inputs = self._inputs(predictor)
        with torch.no_grad():
            assert torch.equal(predictor(inputs), predictor(inputs))

    def test_pure(self, predictor_factory: PredictorFactory) -> None:
        predictor = predictor_factory().eval()
        inputs = self._inputs(predictor)
        before = [f.clone() for f in inputs.features]
        state = {k: v.clone() for k, v in predictor.state_dict().items()}
        with torch.no_grad():
            predictor(inputs)
        assert all(torch.equal(a, b) for a, b in zip(before, inputs.features, strict=True))
        assert all(torch.equal(state[k], v) for k, v in predictor.state_dict().items())

    def test_accepts_min_history(self, predictor_factory: PredictorFactory) -> None:
        predictor = predictor_factory().eval()
        channels = predictor.context.channels or 8
        inputs = make_forecast_input(predictor.min_history, shape=(1, 4, channels))
        with torch.no_grad():
            out = predictor(inputs)
        assert out.shape == inputs.features[-1].shape

    def test_token_wise(self, predictor_factory: PredictorFactory) -> None:
        """Forecasting a sequence shard equals the shard of the whole forecast."""
        predictor = predictor_factory().eval()
        inputs = self._inputs(predictor)
        with torch.no_grad():
            whole = predictor(inputs)
            shard = predictor(ForecastInput([f[:, 2:5] for f in inputs.features], inputs.times, inputs.steps,
                                            inputs.t, inputs.step))
        torch.testing.assert_close(shard, whole[:, 2:5], rtol=1e-6, atol=1e-6)

    def test_bundle_roundtrip_bit_exact(self, predictor_factory: PredictorFactory, tmp_path: Path) -> None:
        original = predictor_factory()
        with torch.no_grad():  # move away from the initialisation so the round trip is meaningful
            for p in original.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        meta = BundleMetadata(run_config={}, plugins={}, model_class="test.Model", model_fingerprint="0" * 16,
                              tap="hidden", schedule=None, stage_boundaries=[], channels=original.context.channels)
        save_bundle(tmp_path / "bundle", original, meta)
        restored = predictor_factory()
        load_weights(tmp_path / "bundle", restored, read_metadata(tmp_path / "bundle"))
        for key, value in original.state_dict().items():
            assert torch.equal(value, restored.state_dict()[key]), key
        inputs = self._inputs(original)
        with torch.no_grad():
            assert torch.equal(original.eval()(inputs), restored.eval()(inputs))

    def test_config_rejects_unknown_keys(self, predictor_factory: PredictorFactory) -> None:
        from pydantic import ValidationError

        predictor = predictor_factory()
        with pytest.raises(ValidationError):
            type(predictor.config).model_validate({"definitely_not_a_field": 1})
