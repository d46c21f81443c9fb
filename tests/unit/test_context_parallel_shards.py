"""Context parallelism needs no communication in LESA: predictors are token-wise.

Under diffusers' context parallelism every rank holds a contiguous shard of the image tokens, so the
runtime's history — and its forecast — on a rank is the shard of the tap. These tests check that
forecasting each sequence shard and concatenating equals forecasting the whole sequence, with LESA's
real predictor (the stage-aware KAN composite) and the MLP ablation, in inference and training mode.
"""

from __future__ import annotations

import pytest
import torch

from lesa_core.composite import StageAwarePredictor, build_predictor
from lesa_core.interfaces import ForecastInput, Predictor
from lesa_predictors.kan import KANPredictor
from lesa_predictors.mlp import MLPPredictor
from lesa_schedulers.routers.threshold import ThresholdConfig, ThresholdRouter

CHANNELS = 12
TOKENS = 30
STEPS = 20


def _predictor(cls: type[Predictor], per_channel: bool) -> Predictor:
    torch.manual_seed(0)
    router = ThresholdRouter(ThresholdConfig(boundaries=(0.9, 0.5)))
    pred = build_predictor(cls, cls.Config(taps=[4, 8, 8], hidden=[16, 16], per_channel=per_channel), router,
                           CHANNELS)
    assert isinstance(pred, StageAwarePredictor)
    with torch.no_grad():  # move every parameter off its initialisation so no expert is trivial
        for p in pred.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return pred


def _history(t_now: float, n: int, *, batch: int = 2) -> ForecastInput:
    g = torch.Generator().manual_seed(int(t_now * 1000))
    schedule = torch.linspace(1.0, 0.0, STEPS + 1)
    step = int(torch.argmin((schedule - t_now).abs()))
    idx = list(range(step - n, step))
    features = [torch.randn(batch, TOKENS, CHANNELS, generator=g) for _ in idx]
    return ForecastInput(features, schedule[idx], torch.tensor(idx, dtype=torch.float32),
                         schedule[step].clone(), torch.tensor(float(step)))


def _shard(inputs: ForecastInput, parts: int) -> list[ForecastInput]:
    """Each rank's view: the same times and steps, a contiguous token shard of every feature."""
    pieces = [torch.tensor_split(f, parts, dim=1) for f in inputs.features]
    return [ForecastInput([p[r] for p in pieces], inputs.times, inputs.steps, inputs.t, inputs.step)
            for r in range(parts)]


@pytest.mark.parametrize("cls", [KANPredictor, MLPPredictor], ids=["kan", "mlp"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar-taps", "per-channel"])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_forecasting_each_sequence_shard_equals_sharding_the_forecast(
    cls: type[Predictor], per_channel: bool, parts: int
) -> None:
    pred = _predictor(cls, per_channel)
    for mode in ("eval", "train"):
        getattr(pred, mode)()
        for t_now in (0.95, 0.7, 0.3):  # one forecast in each stage of the composite
            inputs = _history(t_now, 8)
            with torch.no_grad():
                whole = pred(inputs)
                shards = [pred(shard) for shard in _shard(inputs, parts)]
            assert torch.equal(torch.cat(shards, dim=1), whole), (mode, t_now)


def test_shard_forecasts_depend_on_their_own_tokens_only() -> None:
    """Changing the tokens of one shard leaves the other shards' forecasts untouched."""
    pred = _predictor(KANPredictor, per_channel=True).eval()
    inputs = _history(0.7, 8)
    changed = ForecastInput([f.clone() for f in inputs.features], inputs.times, inputs.steps, inputs.t, inputs.step)
    for f in changed.features:
        f[:, TOKENS // 2:] += 1.0
    with torch.no_grad():
        a, b = pred(inputs), pred(changed)
    assert torch.equal(a[:, : TOKENS // 2], b[:, : TOKENS // 2])
    assert not torch.equal(a[:, TOKENS // 2:], b[:, TOKENS // 2:])


def test_gradients_of_sharded_forecasts_sum_to_the_whole() -> None:
    """Training on token shards and summing the gradients (what an all-reduce does) is training on the
    whole sequence: the coefficients see every token through a sum."""
    pred = _predictor(KANPredictor, per_channel=False).train()
    inputs = _history(0.7, 8)
    target = torch.randn_like(inputs.features[-1])
    pred.zero_grad()
    torch.nn.functional.l1_loss(pred(inputs), target, reduction="sum").backward()
    whole = [p.grad.clone() for p in pred.parameters()]
    pred.zero_grad()
    for shard, target_shard in zip(_shard(inputs, 3), torch.tensor_split(target, 3, dim=1), strict=True):
        torch.nn.functional.l1_loss(pred(shard), target_shard, reduction="sum").backward()
    for g, p in zip(whole, pred.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)
