"""``training.schedules``: the full-step schedules a run trains on beside its own policy."""

from __future__ import annotations

import pytest

from lesa_core.errors import ConfigError
from lesa_core.interfaces import Decision
from lesa_core.run import resolve_run
from lesa_core.trainer.schedules import training_schedules


def _full(decisions: list[Decision]) -> list[int]:
    return [i for i, d in enumerate(decisions) if d is Decision.COMPUTE]


def _schedules(policy: dict, schedules: object = "auto", steps: int = 50):
    run = resolve_run({"predictor": "kan", "policy": policy, "training": {"schedules": schedules}})
    return training_schedules(run.plugins, run.config.training, steps)


def test_auto_adds_the_interval_policys_longer_neighbour_and_keeps_the_run_first() -> None:
    own, longer = _schedules({"name": "interval", "interval": 7, "warmup": 3})
    assert own.label == "run" and _full(own.decisions) == [0, 1, 2, 3, 9, 16, 23, 30, 37, 44]
    assert longer.label == "interval=11" and _full(longer.decisions) == [0, 1, 2, 3, 13, 24, 35, 46]
    assert own.forecast_steps == 40 and longer.forecast_steps == 42
    # a fresh policy per call (the runtime keeps one per cache context)
    assert longer.make_policy() is not longer.make_policy()
    assert longer.make_policy().schedule(50) == longer.decisions


def test_explicit_overrides_keep_the_other_parameters_and_drop_duplicates_and_no_forecast_schedules() -> None:
    schedules = _schedules({"name": "interval", "interval": 7, "warmup": 5, "force_full": []},
                           [{"interval": 10}, {"interval": 7}, {"interval": 1}, {"interval": 10}])
    assert [s.label for s in schedules] == ["run", "interval=10"]
    assert _full(schedules[1].decisions)[:6] == [0, 1, 2, 3, 4, 14]  # warm-up 5 and no forced step kept


def test_an_empty_list_and_policies_without_neighbours_train_on_the_run_schedule_only() -> None:
    assert [s.label for s in _schedules({"name": "interval", "interval": 7}, [])] == ["run"]
    assert [s.label for s in _schedules({"name": "interval", "interval": 1})] == ["run"]  # N = 1: nothing to forecast
    learned = _schedules({"name": "learned", "budget": 10})
    assert [s.label for s in learned] == ["run"]


def test_an_override_the_policy_does_not_accept_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"training.schedules\[1\] \{'intervl': 3\} is not a valid IntervalPolicy "
                                          r"override \(intervl: Extra inputs are not permitted\)") as caught:
        _schedules({"name": "interval", "interval": 7}, [{"interval": 9}, {"intervl": 3}])
    assert caught.value.path == "training.schedules.1"
    with pytest.raises(ConfigError, match="interval: Input should be greater than or equal to 1"):
        _schedules({"name": "interval", "interval": 7}, [{"interval": 0}])


def test_the_default_is_the_run_schedule_only() -> None:
    run = resolve_run({"predictor": "kan", "policy": {"name": "interval", "interval": 7}})
    assert run.config.training.schedules == []
    assert [s.label for s in training_schedules(run.plugins, run.config.training, 50)] == ["run"]


def test_a_schedules_value_that_is_neither_auto_nor_a_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="schedules"):
        resolve_run({"predictor": "kan", "training": {"schedules": "all"}})
