"""Property-based tests (hypothesis): cache policies, stage routers, and config parsing.

Example counts are modest (``max_examples=50``) so the module runs in seconds.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lesa_core.config import RunConfig, load_config, resolve_plugins
from lesa_core.errors import ConfigError
from lesa_core.interfaces import Decision, StepInfo
from lesa_schedulers.policies.interval import IntervalConfig, IntervalPolicy
from lesa_schedulers.routers.change_points import ChangePointConfig, ChangePointRouter
from lesa_schedulers.routers.threshold import ThresholdConfig, ThresholdRouter

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- interval policy

policies = st.builds(
    lambda n, e, forced, phase: IntervalConfig(interval=n, warmup=e, force_full=tuple(forced), phase=phase),
    st.integers(1, 12), st.integers(0, 8), st.lists(st.integers(0, 60), max_size=5),
    st.none() | st.integers(0, 20),
)


def _periodic_count(lo: int, hi: int, phase: int, n: int) -> int:
    """How many s in [lo, hi) satisfy (s - phase) % n == 0 (closed form)."""
    if hi <= lo:
        return 0
    return (hi - 1 - phase) // n - (lo - 1 - phase) // n


@SETTINGS
@given(policies, st.integers(2, 80))
def test_interval_full_passes_formula(config: IntervalConfig, steps: int) -> None:
    e, n = config.warmup, config.interval
    phase = config.phase if config.phase is not None else e + n - 1
    forced_extra = [f for f in config.force_full if e <= f < steps and (f - phase) % n != 0]
    expected = min(e, steps) + _periodic_count(e, steps, phase, n) + len(forced_extra)
    assert IntervalPolicy(config).num_full_passes(steps) == expected


@SETTINGS
@given(policies, st.integers(2, 80))
def test_interval_warmup_and_forced_steps_compute(config: IntervalConfig, steps: int) -> None:
    decisions = IntervalPolicy(config).schedule(steps)
    assert len(decisions) == steps
    for s in [*range(min(config.warmup, steps)), *(f for f in config.force_full if f < steps)]:
        assert decisions[s] is Decision.COMPUTE, s
    if config.interval == 1:
        assert all(d is Decision.COMPUTE for d in decisions)


@SETTINGS
@given(policies, st.integers(2, 60), st.integers(0, 59))
def test_interval_is_deterministic_and_reset_restores(config: IntervalConfig, steps: int, cut: int) -> None:
    a, b = IntervalPolicy(config), IntervalPolicy(config)
    first = [a.decide(StepInfo(i, None, steps)) for i in range(steps)]
    assert first == [b.decide(StepInfo(i, 1.0 - i / steps, steps)) for i in range(steps)]  # t does not matter
    a.reset()
    partial = [a.decide(StepInfo(i, None, steps)) for i in range(min(cut, steps))]
    a.reset()
    assert partial == first[: len(partial)]
    assert [a.decide(StepInfo(i, None, steps)) for i in range(steps)] == first
    assert a.schedule(steps) == first == a.schedule(steps)


def test_lesa_published_schedules() -> None:
    for n, passes in ((7, 10), (8, 9), (10, 8)):
        assert IntervalPolicy(IntervalConfig(interval=n, warmup=3, force_full=(3,))).num_full_passes(50) == passes


# ----------------------------------------------------------------------------- routers

boundaries = st.lists(st.floats(0.001, 0.999, allow_nan=False), max_size=5, unique=True).map(
    lambda bs: tuple(sorted({round(b, 4) for b in bs}, reverse=True)))
times = st.floats(-0.5, 1.5, allow_nan=False, width=32)


def _routers(bounds: tuple[float, ...]) -> list[Any]:
    fitted = ChangePointRouter(ChangePointConfig(num_stages=len(bounds) + 1, boundaries=bounds, min_steps=1))
    return [ThresholdRouter(ThresholdConfig(boundaries=bounds)), fitted]


@SETTINGS
@given(boundaries, st.lists(times, min_size=1, max_size=20))
def test_routers_are_total_monotone_and_agree_on_host_and_tensor(bounds: tuple[float, ...], ts: list[float]) -> None:
    for router in _routers(bounds):
        assert router.num_stages == len(bounds) + 1
        tensor = torch.tensor(ts, dtype=torch.float32)
        on_device = router.route_tensor(tensor)
        assert on_device.dtype == torch.int64 and on_device.shape == tensor.shape
        host = [router.route(float(t)) for t in tensor]  # the float32 values, read on the host
        assert on_device.tolist() == host
        assert all(0 <= s < router.num_stages for s in host)  # total, even outside [0, 1]
        ordered = sorted(zip(tensor.tolist(), host, strict=True), reverse=True)  # t falling
        assert all(a[1] <= b[1] for a, b in zip(ordered, ordered[1:], strict=False))  # stage never decreases
        for b in router.boundaries:  # t == boundary belongs to the later stage (t <= b)
            assert router.route(b) == router.route(b - 1e-9) == router.route(b + 1e-6) + 1


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 4), st.integers(6, 40), st.data())
def test_change_points_fit_gives_valid_boundaries(stages: int, min_steps: int, steps: int, data: st.DataObject) -> None:
    ts = torch.linspace(1.0, 1.0 / steps, steps)
    change = torch.tensor(data.draw(st.lists(st.floats(1e-6, 10.0), min_size=steps, max_size=steps)))
    router = ChangePointRouter(ChangePointConfig(num_stages=stages, min_steps=min_steps))
    router.fit(ts, change)
    bounds = router.boundaries
    assert len(bounds) <= stages - 1
    assert all(0.0 < b < 1.0 for b in bounds)
    assert all(a > b for a, b in zip(bounds, bounds[1:], strict=False))
    # what the trainer stores in the bundle validates and rebuilds the same router
    again = ChangePointRouter(ChangePointConfig(**router.state()))  # type: ignore[arg-type]
    assert again.boundaries == bounds
    assert [again.route(float(t)) for t in ts] == [router.route(float(t)) for t in ts]


# ----------------------------------------------------------------------------- config parsing

names = st.sampled_from(["taylor", "kan", "mlp", "interval", "threshold", "change_points", "nope", "", "KAN"])
scalars = (st.none() | st.booleans() | st.integers(-3, 60) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=6) | st.sampled_from(["hidden", "output", "auto", "flux", "schedule", "relative"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["name", "order", "interval", "warmup", "force_full", "phase", "boundaries", "num_stages",
                     "taps", "hidden", "time_encoding", "schedule", "epochs", "lr", "batch_size", "typo"]),
    inner, max_size=4), max_leaves=8)
plugin_specs = names | st.fixed_dictionaries({"name": names}, optional={
    "order": st.integers(-1, 4), "interval": st.integers(-1, 10), "warmup": st.integers(-1, 5),
    "force_full": st.lists(st.integers(-2, 10), max_size=3), "boundaries": st.lists(st.floats(-0.5, 1.5), max_size=3),
    "num_stages": st.integers(0, 9), "taps": st.integers(0, 9) | st.lists(st.integers(0, 9), max_size=4),
    "time_encoding": st.sampled_from(["relative", "schedule", "absolute"]),
    "schedule": st.lists(st.floats(-1, 2), max_size=5), "typo": values})
KEYS = ["model", "bundle", "adapter", "tap", "predictor", "router", "policy", "guard_non_finite", "training",
        "polciy", "predicter", "extra"]
configs = st.dictionaries(st.sampled_from(KEYS), values, max_size=5).flatmap(lambda base: st.fixed_dictionaries(
    {}, optional={"predictor": plugin_specs, "router": plugin_specs, "policy": plugin_specs,
                  "training": st.dictionaries(st.sampled_from(["num_steps", "seed", "stage1", "stage2", "lr", "prompts"]),
                                              values, max_size=3)}).map(lambda plugins: {**base, **plugins}))


@SETTINGS
@given(configs)
def test_any_config_dict_is_a_run_config_or_a_config_error_with_a_path(host: Any, data: dict[str, Any]) -> None:
    data.pop("bundle", None)  # a bundle would be looked up on disk or on the Hub
    try:
        config = load_config(data)
        resolve_plugins(config, host)
    except ConfigError as exc:
        assert exc.path, f"no field path in: {exc}"
        assert exc.path.split(".")[0] in data, (exc.path, data)
        assert str(exc).strip()
        return
    assert isinstance(config, RunConfig)
    assert load_config(config.to_dict()) == config  # what a bundle stores parses back to the same config


@SETTINGS
@given(st.sampled_from([math.nan, math.inf, -math.inf]) | st.floats(allow_nan=True, allow_infinity=True))
def test_non_finite_numbers_never_pass_as_boundaries_or_rates(x: float) -> None:
    for data in ({"router": {"name": "threshold", "boundaries": [x]}},
                 {"router": {"name": "change_points", "boundaries": [x]}},
                 {"training": {"stage1": {"lr": x}}}, {"training": {"stage2": {"lr": x}}},
                 {"training": {"weight_decay": x}}, {"training": {"clip_grad_norm": x}},
                 {"predictor": {"name": "kan", "schedule_atol": x}}):
        try:
            load_config(data)
            resolve_plugins(load_config(data), _host())
        except ConfigError:
            continue
        assert math.isfinite(x), data


@functools.cache
def _host() -> Any:
    from reliability_support import plugin_modules

    from lesa_core.plugins import PluginHost

    return PluginHost.create(autoload=False, plugins=plugin_modules())


@pytest.fixture(scope="module")
def host() -> Any:  # module-scoped (hypothesis re-uses it across examples)
    return _host()
