"""Fitting a learned or adaptive cache policy to the trained predictor (after training, before the bundle
is written): the policy's :meth:`~lesa_core.interfaces.CachePolicy.fit` gets the teacher-forced error of
schedules on the collected trajectories (:class:`~lesa_core.trainer.schedule_error.TeacherForcedScheduleError`);
the parameters it returns replace the run's policy, and so go into the bundle's run config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lesa_core.interfaces import CachePolicy, Decision, Predictor, replay
from lesa_core.plugins import PluginHost
from lesa_core.run import ResolvedRun
from lesa_core.trainer.schedule_error import TeacherForcedScheduleError

__all__ = ["FIT_ROWS", "fit_policy", "fits_after_training"]

FIT_ROWS = 16
"""Trajectories (rows of every cache context) a policy is fitted on: a search forecasts thousands of
(step, history) pairs, and a forecast's cost grows with the rows."""


def fits_after_training(policy: CachePolicy) -> bool:
    """Whether ``policy`` fits parameters to the trained predictor (overrides :meth:`CachePolicy.fit`)."""
    return type(policy).fit is not CachePolicy.fit


def fit_policy(
    run: ResolvedRun,
    predictor: Predictor,
    taps: dict[str, Tensor],
    schedule: Sequence[float],
    *,
    host: PluginHost | None = None,
) -> tuple[ResolvedRun, dict[str, Any] | None]:
    """``run`` with its policy fitted to ``predictor`` on ``taps`` (unchanged when the policy fits nothing),
    and a report: the teacher-forced error and full passes of the policy before and after fitting."""
    policy = run.plugins.make_policy()
    if not fits_after_training(policy):
        return run, None
    error = TeacherForcedScheduleError(predictor, taps, schedule, max_rows=FIT_ROWS)
    before, before_error = replay(policy, error)
    params = policy.fit(error)
    if params is None:
        return run, None
    fitted = run.derive(policy={"name": run.policy.name, **params}, host=host)
    after, after_error = replay(fitted.plugins.make_policy(), error)
    report = {
        "policy": run.policy.name,
        "error_before": before_error,
        "full_passes_before": sum(d is Decision.COMPUTE for d in before),
        "decisions_before": _letters(before),
        "error_after": after_error,
        "full_passes_after": sum(d is Decision.COMPUTE for d in after),
        "forecasts_evaluated": error.forecasts_made,
        "decisions_after": _letters(after),
    }
    return fitted, report


def _letters(decisions: Sequence[Decision]) -> str:
    """``FFcccF…``: a schedule's decisions as the runtime's stats print them (F computes, c forecasts)."""
    return "".join("F" if d is Decision.COMPUTE else "c" for d in decisions)
