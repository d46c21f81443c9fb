"""The ``probe`` family (issue #18 item 3): Taylor forecast + a closed-form channel map of the probe drift, and
trajectory stores with and without probes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from lesa_core.errors import ConfigError, TrainingError
from lesa_core.interfaces import ClosedFormFit, Decision, ForecastInput, PredictorContext
from lesa_core.trainer.losses import TeacherForcing
from lesa_core.trainer.selection import fit_closed_form, forecast_steps, teacher_forced_examples
from lesa_core.trainer.store import StoreMeta, TrajectoryStore
from lesa_predictors.probe import ProbeConfig, ProbePredictor
from lesa_predictors.taylor import TaylorConfig, TaylorPredictor

S = 12
TIMES = torch.tensor([1.0 - i / S for i in range(S)])
F, C_ = Decision.FORECAST, Decision.COMPUTE
DECISIONS = [C_, C_, C_, F, F, C_, F, F, C_, F, F, C_]


def probe_predictor(channels: int = 4, **params) -> ProbePredictor:
    return ProbePredictor(ProbeConfig.model_validate(params), PredictorContext(channels=channels))


def synthetic(prompts: int = 6, tokens: int = 5, channels: int = 4, probe_channels: int = 3, seed: int = 0):
    """Trajectories whose error against Taylor-1 is exactly ``drift · W + b`` for known ``W``, ``b``:
    random taps and probes, then every forecast step's target rewritten as Taylor + the map of its drift."""
    g = torch.Generator().manual_seed(seed)
    taps = torch.randn(prompts, S, tokens, channels, generator=g, dtype=torch.float64).float()
    probes = torch.randn(prompts, S, tokens, probe_channels, generator=g)
    w = torch.randn(probe_channels, channels, generator=g)
    b = torch.randn(channels, generator=g)
    teacher = TeacherForcing(TaylorPredictor(TaylorConfig(order=1)), DECISIONS, TIMES)
    for step in forecast_steps(teacher):
        idx = teacher.history(step)
        base = teacher.forecast(taps, step)  # (P, N, C), from the ground-truth full passes
        drift = probes[:, step] - probes[:, idx[-1]]
        taps[:, step] = base + drift @ w + b
    return taps, probes, w, b


def test_the_family_reads_a_probe_and_fits_in_closed_form() -> None:
    p = probe_predictor()
    assert isinstance(p, ClosedFormFit) and p.uses_probe and p.probe_blocks is None
    assert ProbePredictor.reads_probe(ProbeConfig()) and not TaylorPredictor.reads_probe(TaylorConfig())
    assert probe_predictor(probe_blocks=3).probe_blocks == 3
    assert not TaylorPredictor(TaylorConfig()).uses_probe
    with pytest.raises(ConfigError, match="channel count"):
        ProbePredictor(ProbeConfig(), PredictorContext())
    with pytest.raises(ValueError):
        ProbeConfig.model_validate({"history": "steps"})  # the drift is from the last full pass


def test_untrained_or_without_drift_it_is_the_taylor_forecast() -> None:
    g = torch.Generator().manual_seed(1)
    features = [torch.randn(2, 5, 4, generator=g) for _ in range(2)]
    inputs = ForecastInput(
        features, torch.tensor([0.9, 0.8]), torch.tensor([1.0, 3.0]), torch.tensor(0.7), torch.tensor(4.0)
    )
    taylor = TaylorPredictor(TaylorConfig(order=1))(inputs)
    p = probe_predictor()
    assert torch.equal(p(inputs), taylor)
    drifted = dataclasses.replace(inputs, probe_drift=torch.randn(2, 5, 4, generator=g))
    torch.testing.assert_close(p(drifted), taylor)  # W = 0, b = 0
    p.weight.copy_(torch.eye(4))
    torch.testing.assert_close(p(drifted), taylor + drifted.probe_drift)
    assert torch.equal(p(inputs), taylor)  # no drift: the map is not applied
    assert dataclasses.replace(drifted).last(1).probe_drift is drifted.probe_drift


@pytest.mark.parametrize("fit_increment", [True, False])
def test_closed_form_fit_recovers_a_known_linear_map_of_the_drift(fit_increment: bool) -> None:
    taps, probes, w, b = synthetic()
    p = probe_predictor(probe_channels=3, ridge=0.0, fit_increment=fit_increment)
    summary = fit_closed_form(p, DECISIONS, TIMES, {"cond": taps}, {"cond": probes})
    torch.testing.assert_close(p.weight, w, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(p.bias, b, atol=1e-4, rtol=1e-4)
    assert p.increment_map.shape == ((4, 4) if fit_increment else (0, 4))
    assert float(p.increment_map.abs().sum()) < 1e-3  # the base needed no correction
    assert summary["residual_ratio"] < 1e-8 and summary["taylor_residual"] > 1.0
    # the runtime's view: a forecast with the drift reproduces the target
    teacher = TeacherForcing(p, DECISIONS, TIMES)
    for example in teacher_forced_examples(teacher, {"cond": taps}, probes={"cond": probes}):
        torch.testing.assert_close(p(example.inputs), example.target, atol=1e-4, rtol=1e-4)


def test_a_ridge_penalty_shrinks_the_map_towards_taylor() -> None:
    taps, probes, _, _ = synthetic()
    loose, tight = (
        probe_predictor(probe_channels=3, ridge=0.0),
        probe_predictor(probe_channels=3, ridge=100.0),
    )
    fit_closed_form(loose, DECISIONS, TIMES, {"cond": taps}, {"cond": probes})
    fit_closed_form(tight, DECISIONS, TIMES, {"cond": taps}, {"cond": probes})
    assert tight.weight.norm() < 0.5 * loose.weight.norm()


def test_the_increment_map_can_turn_the_base_into_reuse() -> None:
    """Targets equal to the last full pass (a frozen trajectory between passes): the fit must find M = −I."""
    taps, probes, _, _ = synthetic()
    teacher = TeacherForcing(TaylorPredictor(TaylorConfig(order=1)), DECISIONS, TIMES)
    for step in forecast_steps(teacher):
        taps[:, step] = taps[:, teacher.history(step)[-1]]
    p = probe_predictor(probe_channels=3, ridge=0.0)
    assert fit_closed_form(p, DECISIONS, TIMES, {"cond": taps}, {"cond": probes})["residual_ratio"] < 1e-8
    torch.testing.assert_close(p.increment_map, -torch.eye(4), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(p.weight, torch.zeros(3, 4), atol=1e-4, rtol=1e-4)


def test_fitting_without_probes_says_to_collect_again() -> None:
    taps, _, _, _ = synthetic()
    with pytest.raises(TrainingError, match="collected without probes"):
        fit_closed_form(probe_predictor(), DECISIONS, TIMES, {"cond": taps})


def test_a_drift_of_another_width_is_refused_naming_the_setting() -> None:
    taps, probes, _, _ = synthetic(probe_channels=3)
    with pytest.raises(ConfigError, match="probe_channels"):
        fit_closed_form(probe_predictor(), DECISIONS, TIMES, {"cond": taps}, {"cond": probes})


def _meta(**changes) -> StoreMeta:
    base = dict(
        model_class="M",
        model_fingerprint="f",
        tap="hidden",
        num_steps=S,
        schedule=None,
        token_index=None,
        prompts=["a", "b"],
        seed=0,
        call={},
    )
    return StoreMeta(**{**base, **changes})


def test_old_collections_without_probes_still_load(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path)
    store.open(_meta())
    raw = json.loads(store.meta_path.read_text())
    raw.pop("probe_blocks")  # a store.json written before probes existed
    store.meta_path.write_text(json.dumps(raw))
    taps = torch.randn(2, S, 5, 4)
    for i in range(2):
        store.write(i, {"cond": taps[i]}, f"prompt {i}")
    meta = store.read_meta()
    assert meta is not None and meta.probe_blocks is None
    torch.testing.assert_close(store.load()["cond"], taps)
    assert store.load(what="probes") == {}


def test_a_probe_collection_keeps_taps_and_probes_apart(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path)
    store.open(_meta(probe_blocks=1))
    taps, probes = torch.randn(2, S, 5, 4), torch.randn(2, S, 5, 3)
    for i in range(2):
        store.write(i, {"cond": taps[i]}, f"prompt {i}", {"cond": probes[i]})
    assert store.read_meta().probe_blocks == 1
    torch.testing.assert_close(store.load()["cond"], taps)
    torch.testing.assert_close(store.load(what="probes")["cond"], probes)
    with pytest.raises(TrainingError, match="different collection"):
        store.open(_meta())  # a run without probes cannot reuse it as its own collection
