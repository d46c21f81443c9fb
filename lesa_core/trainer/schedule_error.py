"""The forecast error of a whole compute schedule, measured teacher-forced on collected trajectories:
what a learned cache policy fits its schedule to (:meth:`lesa_core.interfaces.CachePolicy.fit`).

For a schedule (one :class:`~lesa_core.interfaces.Decision` per step) every forecast step ``s`` is
forecast from the ground-truth taps of the steps its history reads
(:func:`~lesa_core.trainer.schedule.history_indices`), exactly as stage 1 trains, and scored as

    e_s = |σ_s − σ_{s+1}| · mean over rows of ||ĥ_s − h_s||₂ / ||h_s||₂

— the relative tap error weighted by the sampler's step size, since on an Euler step the latent moves by
``Δσ`` times the model output the tap maps to. Rows are the trajectories of every cache context. A
forecast depends only on (its step, the steps it reads), so errors are memoised on that pair: searching
over many schedules forecasts each distinct pair once.

Teacher forcing ignores that a cached trajectory drifts from the reference; the error of a schedule is
a proxy for, not a measurement of, its image fidelity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lesa_core.errors import TrainingError
from lesa_core.interfaces import Decision, ForecastInput, Predictor
from lesa_core.trainer.schedule import history_indices

__all__ = ["TeacherForcedScheduleError"]


class TeacherForcedScheduleError:
    """A :class:`~lesa_core.interfaces.ScheduleError` over collected trajectories.

    :param predictor: the trained predictor (used under ``torch.no_grad()``; not modified).
    :param taps: cache context → ``(P, S, N', C)`` ground-truth taps (as :meth:`TrajectoryStore.load` gives).
    :param schedule: the S + 1 flow times of the trajectories (terminal 0 included).
    :param max_rows: use at most this many rows (evenly spread over the trajectories of every context), to
        bound the cost: a forecast's cost grows with the rows.
    :raises TrainingError: if the taps and the schedule disagree on the step count.
    """

    def __init__(
        self,
        predictor: Predictor,
        taps: dict[str, Tensor],
        schedule: Sequence[float],
        *,
        max_rows: int | None = None,
    ) -> None:
        truth = torch.cat([t.float() for t in taps.values()])
        if max_rows is not None and truth.shape[0] > max_rows:  # rows spread over prompts and contexts
            truth = truth[torch.linspace(0, truth.shape[0] - 1, max_rows).round().long()]
        self.num_steps = int(truth.shape[1])
        if len(schedule) != self.num_steps + 1:
            raise TrainingError(
                f"the trajectories have {self.num_steps} steps but the schedule has {len(schedule)} "
                "times (expected steps + 1); collect again"
            )
        param = next(iter(predictor.parameters()), None)
        self.device = param.device if param is not None else truth.device
        self.truth = truth.to(self.device)
        self.predictor = predictor
        self.min_history = max(1, int(predictor.min_history))
        self.history_size = int(predictor.history_size)
        self.history_mode = predictor.history_mode
        sigmas = torch.tensor([float(s) for s in schedule], dtype=torch.float32)
        self.times = sigmas[:-1].to(self.device)
        self.flow_times = [float(s) for s in schedule[:-1]]
        self.weights = (sigmas[:-1] - sigmas[1:]).abs()
        self._norms = self.truth.flatten(2).norm(dim=-1).clamp_min(1e-12)  # (rows, S)
        self._memo: dict[tuple[int, tuple[int, ...]], tuple[float, float]] = {}

    @property
    def forecasts_made(self) -> int:
        """How many distinct (step, history) forecasts were evaluated so far."""
        return len(self._memo)

    def history(self, decisions: Sequence[Decision], step: int) -> tuple[int, ...]:
        """The steps a forecast at ``step`` reads under ``decisions``."""
        return tuple(history_indices(decisions, step, self.history_size, self.history_mode))

    def step_error(self, step: int, history: tuple[int, ...]) -> float:
        """The weighted error ``e_s`` of forecasting ``step`` from the taps of the steps ``history``."""
        return self._measure(step, history)[0]

    def step_drift(self, step: int, history: tuple[int, ...]) -> float:
        """The forecast's mean relative drift from the tap of ``history[-1]`` (what an adaptive policy sees)."""
        return self._measure(step, history)[1]

    def _measure(self, step: int, history: tuple[int, ...]) -> tuple[float, float]:
        key = (step, history)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        idx = list(history)
        inputs = ForecastInput(
            features=[self.truth[:, j] for j in idx],
            times=self.times[idx],
            steps=torch.tensor(idx, dtype=torch.float32, device=self.device),
            t=self.times[step].clone(),
            step=torch.tensor(float(step), device=self.device),
        )
        with torch.no_grad():
            forecast = self.predictor(inputs).float()
        rel = (forecast - self.truth[:, step]).flatten(1).norm(dim=-1) / self._norms[:, step]
        drift = (forecast - self.truth[:, idx[-1]]).flatten(1).norm(dim=-1) / self._norms[:, idx[-1]]
        value = float(self.weights[step]) * float(rel.mean())
        moved = float(drift.mean())
        if not math.isfinite(value) or not math.isfinite(moved):  # a diverging forecast: never worth choosing
            value, moved = 1e6, 1e6
        self._memo[key] = (value, moved)
        return value, moved

    def __call__(self, decisions: Sequence[Decision]) -> Tensor:
        """``(S,)`` the error of every step under ``decisions`` (0 on full steps; a forecast step with too
        little history is an error: the runtime would compute it, so a schedule must say so)."""
        if len(decisions) != self.num_steps:
            raise TrainingError(
                f"a schedule of {len(decisions)} decisions for trajectories of {self.num_steps} steps"
            )
        out = torch.zeros(self.num_steps)
        for step, decision in enumerate(decisions):
            if decision is Decision.COMPUTE:
                continue
            history = self.history(decisions, step)
            if len(history) < self.min_history:
                raise TrainingError(
                    f"step {step} forecasts with {len(history)} history entries, fewer than the "
                    f"predictor's minimum {self.min_history}"
                )
            out[step] = self.step_error(step, history)
        return out
