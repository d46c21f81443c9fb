"""The data-driven stage router finds regime changes and keeps them in its config state."""

from __future__ import annotations

import torch

from lesa_core.run import resolve_run
from lesa_core.trainer import fit_router, tap_change_per_step
from lesa_schedulers.routers.change_points import ChangePointConfig, ChangePointRouter, segment


def test_segment_finds_the_steps_where_the_level_changes() -> None:
    assert segment([5.0] * 10 + [1.0] * 20 + [3.0] * 8, 3, 3) == [10, 30]
    assert segment([1.0] * 6, 1, 1) == []


def test_fit_places_boundaries_between_regimes() -> None:
    router = ChangePointRouter(ChangePointConfig())
    assert router.boundaries == (0.9, 0.5)  # hand-set fallback before fitting
    times = torch.linspace(1.0, 0.02, 40)
    change = torch.tensor([0.3] * 8 + [0.02] * 24 + [0.1] * 8)
    router.fit(times, change)
    b0, b1 = router.boundaries
    assert times[8] < b0 < times[7] and times[32] < b1 < times[31]
    rebuilt = ChangePointRouter(ChangePointConfig(**{k: v for k, v in router.state().items()}))
    assert rebuilt.boundaries == router.boundaries


def test_trainer_writes_fitted_boundaries_into_the_run_config(plugin_host) -> None:
    import lesa_schedulers.routers.change_points

    plugin_host.register(lesa_schedulers.routers.change_points)
    schedule = torch.linspace(1.0, 0.0, 21).tolist()
    level = torch.tensor([1.0] * 5 + [0.05] * 10 + [0.4] * 5)
    steps = torch.cumsum(level, 0)
    taps = {"cond": (1.0 + steps).view(1, 20, 1, 1).expand(2, 20, 3, 4).clone()}
    change = tap_change_per_step(taps)
    assert change.shape == (20,)
    run = resolve_run({"router": {"name": "change_points", "num_stages": 3}}, host=plugin_host)
    fitted = fit_router(run, taps, schedule, host=plugin_host)
    assert fitted.router.name == "change_points"
    assert len(fitted.router.params["boundaries"]) == 2
    untouched = resolve_run({"router": {"name": "threshold"}}, host=plugin_host)
    assert fit_router(untouched, taps, schedule, host=plugin_host) == untouched
