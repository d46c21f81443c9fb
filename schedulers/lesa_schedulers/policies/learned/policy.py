"""The ``learned`` cache policy: B full passes at the steps fitted to the trained predictor.

``lesa train`` with this policy trains the predictor on an even schedule of B passes
(:func:`~lesa_schedulers.policies.learned.search.even_schedule`), then :meth:`LearnedSchedulePolicy.fit`
searches the B steps that minimise the predictor's teacher-forced error on the collected trajectories
(:mod:`~lesa_schedulers.policies.learned.search`); the fitted ``steps`` and their ``num_steps`` go into
the bundle's run config, so ``attach(pipe, bundle)`` runs them.

At another step count S' than the fitted S, each fitted step s maps to round(s · S' / S); steps that
collide are replaced by the earliest free steps, so the trajectory still makes min(B, S') full passes.
Without the step count (a pipeline that sets no ``num_inference_steps`` on the cache context, as
diffusers' own do) but with the step's flow time t, the policy goes by the fitted steps' flow times
instead: a step computes when its t has reached the next fitted time not yet served (at the fitted step
count these are exactly the fitted steps; at others, fitted times that fall into one step share it, so a
trajectory makes at most B full passes). With neither, the fitted indices are used as they are.

Decisions depend only on the step index, the step count and t: identical on every process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from lesa_core.interfaces import CachePolicy, Decision, PluginConfig, ScheduleError, StepInfo
from lesa_schedulers.policies.learned.search import even_schedule, search_schedule, step_moves

START_WARMUPS = (1, 2, 3)
"""Warm-ups of the even schedules :meth:`LearnedSchedulePolicy.refinement_starts` offers."""


class LearnedScheduleConfig(PluginConfig):
    """:ivar budget: B ≥ 1 full passes per trajectory.
    :ivar steps: the fitted full steps (B distinct indices below ``num_steps``); ``None`` before fitting
        (an even schedule of B passes is used: what the predictor trains on).
    :ivar num_steps: the step count ``steps`` were fitted at (required with ``steps``).
    :ivar times: the flow times of ``steps`` (optional; used when a caller gives t but no step count).
    :ivar warmup: leading full steps of the even schedule used before fitting."""

    budget: int = Field(10, ge=1)
    steps: tuple[int, ...] | None = None
    num_steps: int | None = Field(None, ge=1)
    times: tuple[float, ...] | None = None
    warmup: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _fitted_steps_fit(self) -> LearnedScheduleConfig:
        if self.steps is None:
            return self
        if self.num_steps is None:
            raise ValueError("steps need num_steps (the step count they were fitted at)")
        if len(set(self.steps)) != len(self.steps) or any(not 0 <= s < self.num_steps for s in self.steps):
            raise ValueError(
                f"steps must be distinct indices in [0, {self.num_steps}), got {list(self.steps)}"
            )
        if len(self.steps) != min(self.budget, self.num_steps):
            raise ValueError(
                f"{len(self.steps)} steps for a budget of {self.budget}; give exactly budget steps"
            )
        if self.times is not None and len(self.times) != len(self.steps):
            raise ValueError(
                f"{len(self.times)} times for {len(self.steps)} steps; give one flow time per step, or "
                "times: null (a bundle's fitted policy merges its times with steps you give)"
            )
        return self


def rescale_steps(steps: tuple[int, ...], fitted: int, num_steps: int) -> frozenset[int]:
    """The fitted ``steps`` of a ``fitted``-step trajectory mapped onto ``num_steps`` steps (module docstring)."""
    if num_steps == fitted:
        return frozenset(steps)
    mapped = {min(num_steps - 1, round(s * num_steps / fitted)) for s in steps}
    want = min(len(steps), num_steps)
    free = (s for s in range(num_steps) if s not in mapped)
    while len(mapped) < want:
        mapped.add(next(free))
    return frozenset(mapped)


class LearnedSchedulePolicy(CachePolicy):
    """Compute exactly the fitted steps (stateless: a function of the index and the step count)."""

    Config = LearnedScheduleConfig
    config: LearnedScheduleConfig

    def __init__(self, config: LearnedScheduleConfig) -> None:
        super().__init__(config)
        self._by_steps: dict[int | None, frozenset[int]] = {}
        times = config.times if config.steps is not None else None
        self._times = sorted(times, reverse=True) if times is not None else None
        self._served = 0  # fitted times already served in this trajectory (time-based mode)

    def reset(self) -> None:
        self._served = 0

    def full_steps(self, num_steps: int | None) -> frozenset[int]:
        """The steps that compute in a trajectory of ``num_steps`` steps (``None``: unknown)."""
        cached = self._by_steps.get(num_steps)
        if cached is not None:
            return cached
        c = self.config
        if c.steps is not None and c.num_steps is not None:
            steps = rescale_steps(c.steps, c.num_steps, num_steps) if num_steps else frozenset(c.steps)
        else:
            steps = frozenset(even_schedule(num_steps or 50, c.budget, c.warmup))
        self._by_steps[num_steps] = steps
        return steps

    def decide(self, step: StepInfo) -> Decision:
        if step.num_steps is None and step.t is not None and self._times is not None:
            return self._decide_by_time(step.t)
        return Decision.COMPUTE if step.index in self.full_steps(step.num_steps) else Decision.FORECAST

    def _decide_by_time(self, t: float) -> Decision:
        """Compute when ``t`` reached the next fitted time not yet served (serving every time it reached)."""
        assert self._times is not None
        reached = self._served
        while reached < len(self._times) and t <= self._times[reached] + 1e-6:
            reached += 1
        if reached == self._served:
            return Decision.FORECAST
        self._served = reached
        return Decision.COMPUTE

    def fit(self, error: ScheduleError) -> dict[str, Any] | None:
        """Search the B steps that minimise ``error`` (:func:`search_schedule`); return the config with them."""
        steps = search_schedule(error, self.config.budget)
        times = [error.flow_times[s] for s in steps]
        return {**self.config.model_dump(), "steps": steps, "num_steps": error.num_steps, "times": times}

    def moves(self, flow_times: Sequence[float]) -> list[dict[str, Any]]:
        """The fitted schedule with one full step moved by one or two steps (:func:`step_moves`), each with
        its steps' flow times; none before fitting or when ``flow_times`` do not cover the fitted step count."""
        c = self.config
        if c.steps is None or c.num_steps is None:
            return []
        return self._configs(step_moves(c.steps, c.num_steps), flow_times)

    def refinement_starts(self, flow_times: Sequence[float]) -> list[dict[str, Any]]:
        """The even schedules of the budget after a warm-up of each of :data:`START_WARMUPS` full steps
        (:func:`even_schedule`), those that differ from the fitted steps, with their flow times; none
        before fitting. On the FLUX-class embedded model the climb from the even schedule after one step
        ended 2.5 dB (collection prompts) above the climb from the teacher-forced fit (docs/training.md)."""
        c = self.config
        if c.steps is None or c.num_steps is None:
            return []
        schedules = {tuple(even_schedule(c.num_steps, c.budget, warmup)) for warmup in START_WARMUPS}
        return self._configs([list(s) for s in sorted(schedules) if sorted(s) != sorted(c.steps)], flow_times)

    def _configs(self, schedules: list[list[int]], flow_times: Sequence[float]) -> list[dict[str, Any]]:
        """This (fitted) config with each of ``schedules`` as its steps and their flow times; none when
        ``flow_times`` do not cover the fitted step count."""
        assert self.config.num_steps is not None
        if len(flow_times) < self.config.num_steps:
            return []
        return [{**self.config.model_dump(), "steps": steps, "times": [float(flow_times[s]) for s in steps]}
                for steps in schedules]
