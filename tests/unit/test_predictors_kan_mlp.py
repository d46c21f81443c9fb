"""The learned predictor families ``kan`` (the paper's expert) and ``mlp`` (its ablation)."""

from __future__ import annotations

import math
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor

from lesa_core.bundle import BundleMetadata, load_weights, read_metadata, save_bundle
from lesa_core.composite import StageAwarePredictor, build_predictor
from lesa_core.config import load_config, resolve_plugins
from lesa_core.errors import ConfigError, ScheduleMismatchError
from lesa_core.interfaces import ForecastInput, PredictorContext
from lesa_core.plugins import PluginHost
from lesa_predictors._linear_forecaster import TimeScaledLinearPredictor
from lesa_predictors.kan import KANConfig, KANPredictor
from lesa_predictors.kan.layers import KAN, BSplineKANLinear, bspline_bases, uniform_knots
from lesa_predictors.mlp import MLPConfig, MLPPredictor
from lesa_predictors.taylor import TaylorConfig, TaylorPredictor
from lesa_schedulers.routers.threshold import ThresholdConfig, ThresholdRouter

FAMILIES = [pytest.param(KANPredictor, id="kan"), pytest.param(MLPPredictor, id="mlp")]
C = 8


def make(
    cls: type[TimeScaledLinearPredictor],
    stage: int = 0,
    num_stages: int = 1,
    channels: int | None = C,
    seed: int = 0,
    **params: Any,
) -> TimeScaledLinearPredictor:
    torch.manual_seed(seed)
    params.setdefault("taps", 4)
    return cls(cls.Config(**params), PredictorContext(stage, num_stages, channels))  # type: ignore[arg-type]


def randomize(module: torch.nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Move every parameter away from its initial value (a stand-in for a trained predictor)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def history(
    n: int,
    t_now: float = 0.6,
    shape: tuple[int, ...] = (2, 6, C),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> ForecastInput:
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(shape, generator=gen).to(dtype) for _ in range(n)]
    times = torch.linspace(min(1.0, t_now + 0.05 * n), t_now + 0.05, n)
    steps = torch.arange(n, dtype=torch.float32)
    return ForecastInput(feats, times, steps, torch.tensor(t_now), torch.tensor(float(n)))


# ----------------------------------------------------------------------------- the KAN layer


def test_bspline_bases_partition_of_unity_inside_grid_range() -> None:
    lo, hi, g, k = -3.0, 3.0, 5, 3
    grid = uniform_knots(g, k, (lo, hi)).expand(3, -1)
    x = torch.linspace(lo, hi, 241)[:-1].reshape(-1, 1).expand(-1, 3)
    bases = bspline_bases(x, grid, k)
    assert bases.shape == (240, 3, g + k)
    assert bases.min() >= 0
    torch.testing.assert_close(bases.sum(-1), torch.ones(240, 3), rtol=0, atol=1e-6)
    # cubic B-spline at the knots: 1/6, 2/3, 1/6; and nothing beyond the extended grid
    at_knot = bspline_bases(torch.tensor([[0.6]]), grid[:1], k)[0, 0]
    assert sorted(at_knot[at_knot > 1e-7].tolist()) == pytest.approx([1 / 6, 1 / 6, 2 / 3], abs=1e-6)
    outside = bspline_bases(torch.tensor([[-10.0], [10.0]]), grid[:1], k)
    assert outside.abs().max() == 0


def test_kan_layer_matches_its_formula_and_paper_parameter_count() -> None:
    torch.manual_seed(0)
    layer = BSplineKANLinear(
        5, 3, grid_size=5, spline_order=3, grid_range=(-3, 3), scale_noise=0.02, scale_spline=0.2
    )
    assert sum(p.numel() for p in layer.parameters()) == 10 * 5 * 3  # (G + k + 2)·in·out, lesa-method §3
    assert "grid" not in layer.state_dict()  # derived from the config
    x = torch.randn(4, 5)
    bases = bspline_bases(x, layer.grid, 3)
    expected = torch.nn.functional.silu(x) @ layer.base_weight.T + torch.einsum(
        "nic,oic->no", bases, layer.spline_weight * layer.spline_scaler[..., None]
    )
    torch.testing.assert_close(layer(x), expected)
    assert KAN([7, 4, 1])(torch.randn(2, 7)).shape == (2, 1)


# ----------------------------------------------------------------------------- one expert


@pytest.mark.parametrize("cls", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forecast_keeps_shape_and_dtype(cls: type[TimeScaledLinearPredictor], dtype: torch.dtype) -> None:
    pred = make(cls)
    randomize(pred)
    inputs = history(5, dtype=dtype)
    out = pred(inputs)
    assert out.shape == inputs.features[-1].shape and out.dtype == dtype
    coef, bias = pred.coefficients(inputs)
    assert coef.dtype == bias.dtype == torch.float32 and coef.shape == (5,) and bias.shape == ()
    ref = sum(c * f.float() for c, f in zip(coef, inputs.features, strict=True)) + bias
    torch.testing.assert_close(out.float(), ref.to(dtype).float())


@pytest.mark.parametrize("cls", FAMILIES)
def test_bfloat16_parameters_still_give_float32_coefficients(cls: type[TimeScaledLinearPredictor]) -> None:
    pred = make(cls, per_channel=True).to(torch.bfloat16)  # as the reference kept its predictor
    inputs = history(4, dtype=torch.bfloat16)
    coef, bias = pred.coefficients(inputs)
    assert coef.dtype == bias.dtype == torch.float32
    out = pred(inputs)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.parametrize("cls", FAMILIES)
def test_untrained_expert_is_near_reuse_along_the_first_difference(
    cls: type[TimeScaledLinearPredictor],
) -> None:
    pred = make(cls, taps=4)
    inputs = history(4)
    with torch.no_grad():
        coef, bias = pred.coefficients(inputs)
        alpha = pred.alpha(inputs)
    assert 0 < abs(alpha.item()) < 0.05
    torch.testing.assert_close(
        coef, torch.tensor([0.0, 0.0, -1.0, 1.0]) * alpha + torch.tensor([0, 0, 0, 1.0])
    )
    assert float(bias) == 0


@pytest.mark.parametrize("cls", FAMILIES)
def test_deterministic(cls: type[TimeScaledLinearPredictor]) -> None:
    a, b = make(cls, seed=3), make(cls, seed=3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    inputs = history(6)
    assert torch.equal(a(inputs), a(inputs)) and torch.equal(a(inputs), b(inputs))


@pytest.mark.parametrize("cls", FAMILIES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_gradients_reach_every_parameter(cls: type[TimeScaledLinearPredictor], per_channel: bool) -> None:
    pred = make(cls, taps=4, per_channel=per_channel)  # untrained: the init must not block any gradient
    inputs = history(4)
    loss = (pred(inputs) - torch.randn(inputs.features[-1].shape)).abs().mean()
    loss.backward()
    for name, p in pred.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", FAMILIES)
def test_per_channel_weights(cls: type[TimeScaledLinearPredictor]) -> None:
    pred = make(cls, taps=3, per_channel=True)
    assert pred.weight.shape == (3, C) and pred.bias.shape == (C,)
    randomize(pred)
    inputs = history(3)
    coef, bias = pred.coefficients(inputs)
    assert coef.shape == (3, C) and bias.shape == (C,)
    assert not torch.allclose(coef[:, 0], coef[:, 1])
    for c in range(C):  # channel c is the scalar forecast with that channel's taps
        scalar = sum(coef[k, c] * inputs.features[k][..., c] for k in range(3)) + bias[c]
        torch.testing.assert_close(pred(inputs)[..., c], scalar)
    with pytest.raises(ConfigError, match="channel"):
        make(cls, per_channel=True, channels=None)


@pytest.mark.parametrize("cls", FAMILIES)
def test_token_shard_equals_shard_of_whole_forecast(cls: type[TimeScaledLinearPredictor]) -> None:
    pred = make(cls, taps=4, per_channel=True)
    randomize(pred)
    inputs = history(4, shape=(2, 12, C))
    whole = pred(inputs)
    for lo, hi in [(0, 5), (5, 12)]:
        shard = ForecastInput(
            [f[:, lo:hi] for f in inputs.features], inputs.times, inputs.steps, inputs.t, inputs.step
        )
        assert torch.equal(pred(shard), whole[:, lo:hi])


# ----------------------------------------------------------------------------- time encodings


@pytest.mark.parametrize("cls", FAMILIES)
def test_relative_encoding_works_with_any_history_length(cls: type[TimeScaledLinearPredictor]) -> None:
    pred = make(cls, taps=6)
    randomize(pred)
    assert pred.history_size == 6 and pred.min_history == 1 and pred.encoding_size == 7
    for n in range(1, 10):
        inputs = history(n)
        out = pred(inputs)
        assert out.shape == inputs.features[-1].shape and torch.isfinite(out).all()
        assert pred.coefficients(inputs)[0].shape == (n,)
    # short history = the oldest entry repeated (features and times)
    short = history(3)
    padded = ForecastInput(
        [short.features[0]] * 3 + list(short.features),
        torch.cat([short.times[:1].repeat(3), short.times]),
        torch.arange(6.0),
        short.t,
        short.step,
    )
    torch.testing.assert_close(pred(short), pred(padded))
    # long history: entries older than the K taps weigh nothing
    long = history(9)
    assert torch.equal(pred.coefficients(long)[0][:3], torch.zeros(3))
    torch.testing.assert_close(pred(long), pred(long.last(6)))
    # the encoding: offsets to the K history times (raw flow time), then t
    times = long.times[-6:]
    torch.testing.assert_close(pred.time_encoding(long), torch.cat([long.t - times, long.t.reshape(1)]).reshape(1, 7))
    # ... or in units of the history's mean spacing
    spaced = make(cls, taps=6, relative_units="spacing")
    spacing = (times[0] - times[-1]) / 5
    enc = spaced.time_encoding(long)
    torch.testing.assert_close(enc, torch.cat([(long.t - times) / spacing, long.t.reshape(1)]).reshape(1, 7))
    assert enc[0, -2] == pytest.approx(float((long.t - times[-1]) / spacing))  # the Taylor ratio
    # padding a short history adds no gap; a one-entry history is measured in its own offset (t < t_j)
    randomize(spaced)
    torch.testing.assert_close(spaced(short), spaced(padded))
    assert spaced.time_encoding(history(1))[0, -2] == pytest.approx(-1.0)


@pytest.mark.parametrize("cls", FAMILIES)
def test_schedule_encoding_is_bound_to_its_schedule(cls: type[TimeScaledLinearPredictor]) -> None:
    schedule = [1.0, 0.9, 0.75, 0.5, 0.25, 0.0]
    pred = make(cls, time_encoding="schedule", schedule=schedule)
    assert pred.encoding_size == 6 and pred.num_steps == 5
    inputs = history(4, t_now=0.5)
    torch.testing.assert_close(pred.time_encoding(inputs), (0.5 - torch.tensor(schedule)).reshape(1, 6))
    assert "schedule" not in pred.state_dict()
    pred.check_num_steps(5)
    for s in range(5):
        pred.check_time(s, schedule[s] + 5e-5)
    with pytest.raises(ScheduleMismatchError, match="5-step"):
        pred.check_num_steps(28)
    with pytest.raises(ScheduleMismatchError, match=r"t = 0\.7"):
        pred.check_time(2, 0.7)
    with pytest.raises(ScheduleMismatchError, match="outside"):
        pred.check_time(5, 0.0)
    relative = make(cls)
    relative.check_num_steps(28)  # any step count
    relative.check_time(3, 0.123)


@pytest.mark.parametrize("cls", FAMILIES)
def test_schedule_encoding_without_a_schedule_validates_but_does_not_build(
        cls: type[TimeScaledLinearPredictor]) -> None:
    """A training config may leave the schedule to the trainer (it fills in the collected one); building a
    predictor without one says so."""
    config = cls.Config.model_validate({"time_encoding": "schedule", "taps": 4})
    with pytest.raises(ConfigError, match="fills it in from the collected trajectories"):
        cls(config)


# ----------------------------------------------------------------------------- config


BAD_PARAMS: list[dict[str, Any]] = [
    {"unknown": 1},
    {"taps": 0},
    {"taps": []},
    {"taps": [4, 0, 8]},
    {"taps": "4"},
    {"taps": 2.5},
    {"hidden": [0]},
    {"time_encoding": "absolute"},
    {"schedule": [1.0, 0.0]},  # schedule with the relative encoding
    {"time_encoding": "schedule", "schedule": [0.0, 0.5, 1.0]},  # ascending
    {"time_encoding": "schedule", "schedule": [1.0]},
    {"time_encoding": "schedule", "schedule": [1.5, 0.0]},
    {"schedule_atol": 0},
    {"per_channel": "yes"},
    {"history": "all"},
    {"relative_units": "spacing", "time_encoding": "schedule", "schedule": [1.0, 0.5, 0.0]},  # relative only
    {"relative_units": "steps"},
]
KAN_BAD_PARAMS: list[dict[str, Any]] = [
    {"grid_size": 0},
    {"spline_order": 0},
    {"grid_range": [3, -3]},
    {"grid_range": [0, float("inf")]},
    {"scale_noise": -0.1},
    {"scale_spline": float("nan")},
]


@pytest.mark.parametrize("params", BAD_PARAMS + KAN_BAD_PARAMS, ids=repr)
def test_kan_config_rejects_unknown_keys_and_bad_values(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KANConfig(**params)


@pytest.mark.parametrize("params", [*BAD_PARAMS, {"grid_size": 5}], ids=repr)
def test_mlp_config_rejects_unknown_keys_and_bad_values(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MLPConfig(**params)


def test_config_defaults_and_json_round_trip() -> None:
    cfg = KANConfig()
    assert (cfg.taps, cfg.time_encoding, cfg.hidden, cfg.history) == ((4, 8, 8), "relative", (32, 32), "full")
    assert (cfg.grid_size, cfg.spline_order, cfg.grid_range) == (5, 3, (-3.0, 3.0))
    assert (cfg.scale_noise, cfg.scale_base, cfg.scale_spline, cfg.per_channel) == (0.02, 1.0, 0.2, False)
    sched = KANConfig(time_encoding="schedule", schedule=[1.0, 0.5, 0.0], taps=[2, 3, 3])
    assert KANConfig.model_validate(sched.model_dump(mode="json")) == sched


@pytest.mark.parametrize("cls", FAMILIES)
def test_taps_list_needs_one_value_per_stage(cls: type[TimeScaledLinearPredictor]) -> None:
    assert make(cls, taps=[4, 8, 8], stage=0, num_stages=3).history_size == 4
    assert make(cls, taps=[4, 8, 8], stage=2, num_stages=3).history_size == 8
    with pytest.raises(ConfigError, match="taps"):
        make(cls, taps=[4, 8, 8], num_stages=2)


def test_families_register_through_entry_points_and_resolve_from_a_run_config() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="lesa")}
    assert names.get("kan") == "lesa_predictors.kan" and names.get("mlp") == "lesa_predictors.mlp"
    import lesa_predictors.kan
    import lesa_predictors.mlp
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.threshold

    host = PluginHost.create(
        autoload=False,
        plugins=[
            lesa_predictors.kan,
            lesa_predictors.mlp,
            lesa_schedulers.policies.interval,
            lesa_schedulers.routers.threshold,
        ],
    )
    run = load_config({"predictor": {"name": "kan", "taps": [4, 8, 8], "hidden": [16]}})
    resolved = resolve_plugins(run, host)
    assert resolved.predictor_cls is KANPredictor and resolved.predictor_config.hidden == (16,)
    with pytest.raises(ConfigError, match="grid_size"):
        resolve_plugins(load_config({"predictor": {"name": "mlp", "grid_size": 5}}), host)


# ----------------------------------------------------------------------------- stage-aware composite


@pytest.mark.parametrize("cls", FAMILIES)
def test_composite_routes_each_time_to_its_expert_with_per_stage_taps(
    cls: type[TimeScaledLinearPredictor],
) -> None:
    router = ThresholdRouter(ThresholdConfig(boundaries=(0.9, 0.5)))
    torch.manual_seed(0)
    pred = build_predictor(cls, cls.Config(taps=[4, 8, 8]), router, C)
    assert isinstance(pred, StageAwarePredictor)
    assert [e.history_size for e in pred.experts] == [4, 8, 8] and pred.history_size == 8
    randomize(pred)
    for t, stage in [(0.95, 0), (0.9, 1), (0.7, 1), (0.5, 2), (0.2, 2)]:
        inputs = history(9, t_now=t)
        expert = pred.experts[stage]
        expected = expert(inputs.last(expert.history_size))
        torch.testing.assert_close(pred(inputs), expected, rtol=1e-6, atol=1e-6)
        others = [e(inputs.last(e.history_size)) for i, e in enumerate(pred.experts) if i != stage]
        assert all(not torch.allclose(o, expected) for o in others)
    # fewer entries than the middle stage's K: still forecasts (padding)
    assert torch.isfinite(pred(history(4, t_now=0.7))).all()


@pytest.mark.parametrize("cls", FAMILIES)
def test_bundle_round_trip_is_bit_exact(cls: type[TimeScaledLinearPredictor], tmp_path: Path) -> None:
    router = ThresholdRouter(ThresholdConfig())
    config = cls.Config(taps=[4, 8, 8], per_channel=True)
    torch.manual_seed(0)
    pred = build_predictor(cls, config, router, C)
    randomize(pred)
    meta = BundleMetadata(
        run_config={"predictor": {"name": cls.__name__, **config.model_dump(mode="json")}},
        plugins={},
        model_class="tests.Model",
        model_fingerprint="0" * 16,
        tap="hidden",
        schedule=None,
        stage_boundaries=list(router.boundaries),
        channels=C,
    )
    path = save_bundle(tmp_path / "bundle", pred, meta)
    torch.manual_seed(1)
    loaded = build_predictor(cls, config, router, C)
    load_weights(path, loaded, read_metadata(path))
    for (name, p), q in zip(pred.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    for t in (0.95, 0.7, 0.3):
        inputs = history(8, t_now=t)
        assert torch.equal(pred(inputs), loaded(inputs))


# ----------------------------------------------------------------------------- fitting sanity


def _trajectories(n: int, schedule: Tensor, gen: torch.Generator) -> Tensor:
    """``(S, n, 4, C)`` features a + b·t + c·sin(2.5πt)/2: curvature that changes sign and size with t."""
    a, b, c = torch.randn(3, n, 4, C, generator=gen).unbind(0)
    t = schedule[:-1].reshape(-1, 1, 1, 1)
    return a + b * t + 0.5 * c * torch.sin(2.5 * math.pi * t)


@pytest.mark.parametrize("cls", FAMILIES)
@pytest.mark.usefixtures("one_thread")
def test_teacher_forced_training_beats_taylor_order_1(cls: type[TimeScaledLinearPredictor]) -> None:
    steps = 16
    u = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    schedule = (3 * u / (1 + 2 * u)).float()  # time-shifted: dense near t = 1
    full = [s for s in range(steps) if s <= 3 or (s - 3) % 3 == 0]  # warm-up 3 + forced step 3, then N = 3
    forecast_steps = [s for s in range(steps) if s not in full]
    router = ThresholdRouter(ThresholdConfig(boundaries=(0.9, 0.5)))

    def inputs(feats: Tensor, s: int, k: int) -> ForecastInput:  # teacher forcing: history = GT full passes
        hist = [j for j in full if j < s][-k:]
        return ForecastInput(
            [feats[j] for j in hist],
            schedule[hist],
            torch.tensor(hist, dtype=torch.float32),
            schedule[s],
            torch.tensor(float(s)),
        )

    gen = torch.Generator().manual_seed(0)
    train, test = _trajectories(64, schedule, gen), _trajectories(64, schedule, gen)
    torch.manual_seed(0)
    pred = build_predictor(cls, cls.Config(taps=[4, 8, 8]), router, C)
    assert isinstance(pred, StageAwarePredictor)

    def l1(feats: Tensor) -> Tensor:  # the trainer's way: route on the host, run only that expert
        errors = []
        for s in forecast_steps:
            expert = pred.experts[router.route(float(schedule[s]))]
            errors.append((expert(inputs(feats, s, expert.history_size)) - feats[s]).abs().mean())
        return torch.stack(errors).mean()

    taylor = min(
        torch.stack(
            [
                (TaylorPredictor(TaylorConfig(order=1, spacing=sp))(inputs(test, s, 2)) - test[s])
                .abs()
                .mean()
                for s in forecast_steps
            ]
        )
        .mean()
        .item()
        for sp in ("steps", "time")
    )
    with torch.no_grad():
        before = l1(test).item()
        assert before == pytest.approx(l1(test).item())
        torch.testing.assert_close(pred(inputs(test, 7, 8)), pred.experts[1](inputs(test, 7, 8)))
    optimizer = torch.optim.Adam(pred.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        l1(train).backward()
        optimizer.step()
    with torch.no_grad():
        after = l1(test).item()
    assert after < 0.6 * taylor < before, (before, taylor, after)


def test_relative_units_with_the_schedule_encoding_says_what_to_do() -> None:
    with pytest.raises(ValidationError, match="only applies to time_encoding 'relative'"):
        KANConfig(time_encoding="schedule", schedule=[1.0, 0.5, 0.0], relative_units="spacing")
    # the default units are fine with either encoding
    KANConfig(time_encoding="schedule", schedule=[1.0, 0.5, 0.0], relative_units="flow")
