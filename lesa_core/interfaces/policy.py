"""The :class:`CachePolicy` interface: per step, compute the body or forecast it.

A policy sees only host-side facts about the step (:class:`StepInfo`) and must decide the same way
on every process for the same inputs, so that ranks under context parallelism agree without
communication. Policies may keep state across the steps of one trajectory; :meth:`CachePolicy.reset`
returns them to their initial behaviour.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from torch import Tensor

from lesa_core.interfaces.base import PluginConfig


class Decision(enum.Enum):
    """What the runtime does at one step."""

    COMPUTE = "compute"
    FORECAST = "forecast"


@dataclass(frozen=True)
class StepInfo:
    """Host-side facts about one denoising step.

    :ivar index: 0-based step index within the trajectory.
    :ivar t: flow time in [0, 1] if known on the host without synchronising, else ``None``.
    :ivar num_steps: total steps of the trajectory if the caller said so, else ``None``.
    """

    index: int
    t: float | None = None
    num_steps: int | None = None


class ScheduleError(Protocol):
    """The forecast error a whole schedule would cause, measured on collected trajectories (what a
    learned policy fits to; :mod:`lesa_core.trainer.schedule_error` implements it).

    :ivar num_steps: the trajectories' step count S.
    :ivar min_history: the fewest full steps before a forecast (steps before that must compute).
    :ivar flow_times: the S flow times of the steps.
    """

    num_steps: int
    min_history: int
    flow_times: list[float]

    def __call__(self, decisions: Sequence[Decision]) -> Tensor:
        """``(S,)`` float: each forecast step's error under ``decisions`` (0 on full steps)."""
        ...

    def history(self, decisions: Sequence[Decision], step: int) -> tuple[int, ...]:
        """The steps a forecast at ``step`` reads under ``decisions`` (only the decisions before ``step``
        matter)."""
        ...

    def step_error(self, step: int, history: tuple[int, ...]) -> float:
        """The error of forecasting ``step`` from the steps ``history``."""
        ...

    def step_drift(self, step: int, history: tuple[int, ...]) -> float:
        """The forecast's drift ``||ĥ − h|| / ||h||`` from the newest history tap (what :meth:`CachePolicy.review`
        is given at run time), averaged over the trajectories."""
        ...


class CachePolicy(ABC):
    """Base class of cache policies.

    Three optional extensions (all off by default):

    * **learned** policies override :meth:`fit`: the trainer calls it once the predictor is trained, and
      the parameters it returns go into the run config stored in the bundle; those that also override
      :meth:`moves` (and :meth:`refinement_starts`) are then refined in closed loop
      (:mod:`lesa_core.trainer.policy_refine`);
    * **adaptive** policies set :attr:`reviews_forecasts`: on a step :meth:`decide` forecast, the runtime
      makes the forecast and asks :meth:`review` with its drift from the last full pass (one host sync);
      the policy may turn the step into a full one;
    * policies with neighbours override :meth:`training_variants`: the trainer also trains the predictor on
      those schedules, so that one bundle serves them.

    :cvar Config: the policy's pydantic parameter model.
    :cvar reviews_forecasts: whether the runtime calls :meth:`review` after each forecast.
    """

    Config: ClassVar[type[PluginConfig]] = PluginConfig
    reviews_forecasts: ClassVar[bool] = False

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abstractmethod
    def decide(self, step: StepInfo) -> Decision:
        """Decide one step. Called exactly once per step, in step order."""

    def reset(self) -> None:  # noqa: B027 - stateless policies need nothing
        """Forget the current trajectory."""

    def review(self, step: StepInfo, drift: float) -> Decision:
        """Confirm (``FORECAST``) or overrule (``COMPUTE``) a forecast :meth:`decide` asked for at ``step``,
        given ``drift = ||forecast − h|| / ||h||`` with ``h`` the newest tap in the history (the last full
        pass in ``full`` history mode). Called only when :attr:`reviews_forecasts` is set, right after
        :meth:`decide` of the same step."""
        return Decision.FORECAST

    def fit(self, error: ScheduleError) -> dict[str, Any] | None:
        """Fit the policy's parameters to ``error`` (a trained predictor on collected trajectories);
        return the fitted parameters to store with the bundle, or ``None`` (the default: nothing to fit)."""
        return None

    def moves(self, flow_times: Sequence[float]) -> list[dict[str, Any]]:
        """The parameter sets of schedules next to this (fitted) one that spend as many full passes (a full
        step moved by a step or two, say), for the trainer's closed-loop refinement of a fitted policy: it
        samples collected prompts with each and keeps a move that raises their score. ``flow_times`` are the
        collection's flow times per step. The default: none (nothing to refine)."""
        return []

    def refinement_starts(self, flow_times: Sequence[float]) -> list[dict[str, Any]]:
        """Other parameter sets of as many full passes (even schedules, say) that the closed-loop refinement
        scores beside the fitted one before it climbs, by :meth:`moves`, from the best of them: a search on
        the teacher-forced error can end in a schedule whose closed-loop neighbourhood is poor. The
        default: none."""
        return []

    def training_variants(self) -> list[dict[str, Any]]:
        """Parameter overrides of neighbouring schedules a predictor trained for this policy should serve
        too (another interval, say): with ``training.schedules: auto`` the trainer trains on their forecast
        steps beside this policy's (:mod:`lesa_core.trainer.schedules`). The default: none."""
        return []

    def schedule(self, num_steps: int) -> list[Decision]:
        """The decisions for a whole trajectory of ``num_steps`` steps (resets before and after)."""
        self.reset()
        try:
            return [self.decide(StepInfo(i, None, num_steps)) for i in range(num_steps)]
        finally:
            self.reset()

    def num_full_passes(self, num_steps: int) -> int:
        """How many steps of a ``num_steps`` trajectory compute the body."""
        return sum(d is Decision.COMPUTE for d in self.schedule(num_steps))


class AlwaysCompute(CachePolicy):
    """Every step runs the real model: the policy of trajectory collection and of full-compute
    references. Not a plugin (it is never what a user asks for)."""

    def decide(self, step: StepInfo) -> Decision:
        return Decision.COMPUTE


def replay(policy: CachePolicy, error: ScheduleError) -> tuple[list[Decision], float]:
    """Replay ``policy`` over one trajectory of ``error``'s trajectories, teacher-forced, as the runtime
    runs it (a forecast step with too little history computes; an adaptive policy reviews each forecast
    with the drift averaged over the trajectories): its decisions and their total error."""
    policy.reset()
    decisions: list[Decision] = []
    total = 0.0
    try:
        for step in range(error.num_steps):
            info = StepInfo(step, None, error.num_steps)
            decision = policy.decide(info)
            history = error.history(decisions, step)
            if decision is Decision.FORECAST and len(history) < error.min_history:
                decision = Decision.COMPUTE
            elif decision is Decision.FORECAST and policy.reviews_forecasts:
                drift = error.step_drift(step, history)
                decision = policy.review(info, drift if math.isfinite(drift) else math.inf)
            if decision is Decision.FORECAST:
                total += error.step_error(step, history)
            decisions.append(decision)
    finally:
        policy.reset()
    return decisions, total
