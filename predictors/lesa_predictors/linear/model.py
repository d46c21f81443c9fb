"""The ``linear`` predictor: ``forecast_s = Σ_k c_{s,k} · h_k + b_s`` with coefficients per forecast step.

An L2P-style peer (arXiv 2604.26365: a per-timestep linear map over earlier features, fitted in closed
form) that also serves as a starting point for the learned families. For every forecast step ``s`` of
the schedule the coefficients over the K newest history entries and the bias are the ridge
least-squares solution on teacher-forced examples (ground-truth history, ground-truth target):

* solved for the residual against reuse, ``target − h[-1] ≈ Σ_k w_k h_k + b``, so the ridge penalty
  (``ridge`` × the mean diagonal of the normal equations) shrinks towards reuse; ``c = w + e_newest``;
* the normal equations are accumulated in float64 over every prompt, token (and, unless
  ``per_channel``, channel) of the examples, one batched ``einsum`` per row batch, then solved once: a
  fit of a few hundred trajectories takes seconds on a CPU;
* a step with fewer than K history entries (the first forecasts) is fitted on the entries it has.

The coefficients are bound to the schedule they were fitted on (``schedule``): :meth:`check_num_steps`
refuses another step count, :meth:`check_time` an off-schedule time; a step that was never a forecast
step while fitting forecasts by reuse. The step is looked up on the device (``index_select``), so a
forecast never synchronises with the host.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from einops import einsum, rearrange
from torch import Tensor, nn

from lesa_core.errors import ConfigError, ScheduleMismatchError, TrainingError
from lesa_core.interfaces import Example, ForecastInput, LinearPredictor, PredictorContext
from lesa_predictors.linear.config import LinearConfig


class _NormalEquations:
    """``Σ x xᵀ``, ``Σ x y`` and ``Σ y²`` of one forecast step, float64 (``(C, ·)`` per channel)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.xx: Tensor | None = None
        self.xy: Tensor | None = None
        self.yy: Tensor | None = None

    def add(self, x: Tensor, y: Tensor, per_channel: bool) -> None:
        """``x (B, N, C, n + 1)``, ``y (B, N, C)``, float64."""
        if per_channel:
            xx = einsum(x, x, "b n c i, b n c j -> c i j")
            xy = einsum(x, y, "b n c i, b n c -> c i")
            yy = einsum(y, y, "b n c, b n c -> c")
        else:
            xx = einsum(x, x, "b n c i, b n c j -> i j")
            xy = einsum(x, y, "b n c i, b n c -> i")
            yy = (y * y).sum()
        self.xx = xx if self.xx is None else self.xx + xx
        self.xy = xy if self.xy is None else self.xy + xy
        self.yy = yy if self.yy is None else self.yy + yy

    def solve(self, ridge: float) -> tuple[Tensor, Tensor, Tensor]:
        """The ridge solution ``w (…, n + 1)``, its residual sum of squares and reuse's (``Σ y²``)."""
        assert self.xx is not None and self.xy is not None and self.yy is not None
        size = self.xx.shape[-1]
        eye = torch.eye(size, dtype=self.xx.dtype, device=self.xx.device)
        scale = torch.diagonal(self.xx, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)
        penalty = (ridge * scale)[..., None, None] * eye + 1e-12 * eye
        w = torch.linalg.solve(self.xx + penalty, self.xy.unsqueeze(-1)).squeeze(-1)
        residual = self.yy - 2 * (w * self.xy).sum(-1) + einsum(w, self.xx, w, "... i, ... i j, ... j -> ...")
        return w, residual.clamp_min(0).sum(), self.yy.sum()


class LinearStepPredictor(LinearPredictor):
    """Per-step linear forecaster fitted in closed form (see the module docstring).

    Parameters (fitted, never trained by gradient): ``coef (S, K)`` or ``(S, K, C)``, ``bias (S,)`` or
    ``(S, C)``; initialised to reuse (weight 1 on the newest entry).
    """

    Config = LinearConfig
    config: LinearConfig
    learnable = True
    schedule_bound = True
    schedule: Tensor

    def __init__(self, config: LinearConfig, context: PredictorContext | None = None) -> None:
        super().__init__(config, context)
        if config.schedule is None:
            raise ConfigError(
                "the linear family's coefficients are per step of a schedule and it has none; `lesa train` fills "
                "`schedule` in from the collected trajectories, so give it only to build a predictor by hand",
                path="predictor.schedule",
            )
        shape: tuple[int, ...] = ()
        if config.per_channel:
            if self.context.channels is None:
                raise ConfigError(
                    "per_channel needs the tap's channel count; build the predictor with "
                    "PredictorContext(channels=C)",
                    path="predictor.per_channel",
                )
            shape = (self.context.channels,)
        steps, k = len(config.schedule) - 1, config.taps
        coef = torch.zeros(steps, k, *shape)
        coef[:, -1] = 1.0
        self.coef = nn.Parameter(coef, requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(steps, *shape), requires_grad=False)
        self.register_buffer("schedule", torch.tensor(config.schedule, dtype=torch.float32), persistent=False)

    @property
    def history_size(self) -> int:
        return self.config.taps

    @property
    def num_steps(self) -> int:
        """S, the step count of the schedule the coefficients belong to."""
        return int(self.coef.shape[0])

    @property
    def coefficient_shape(self) -> tuple[int, ...]:
        return tuple(self.bias.shape[1:])

    def coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        n, k = len(inputs.features), self.config.taps
        step = inputs.step.to(device=self.coef.device).reshape(1).to(torch.int64).clamp(0, self.num_steps - 1)
        coef = torch.index_select(self.coef, 0, step)[0].to(torch.float32)
        bias = torch.index_select(self.bias, 0, step)[0].to(torch.float32)
        if n < k:  # the fit of this step saw n entries: its older slots are zero
            coef = coef[k - n :]
        elif n > k:
            coef = torch.cat([coef.new_zeros((n - k, *coef.shape[1:])), coef])
        return coef, bias

    @torch.no_grad()
    def fit_closed_form(self, examples: Iterable[Example]) -> dict[str, float]:
        """Ridge least squares per forecast step over ``examples`` (one pass); unseen steps stay reuse.

        :return: ``steps`` fitted, ``residual``: the fit's squared error as a fraction of reuse's on the same
            examples (1.0 = no better than reuse).
        :raises TrainingError: if there are no examples or they are not finite.
        """
        equations: dict[int, _NormalEquations] = {}
        for example in examples:
            inputs = example.inputs
            step = int(inputs.step)
            n = min(len(inputs.features), self.config.taps)
            features = [f.to(torch.float64) for f in inputs.features[-n:]]
            x = torch.stack([*features, torch.ones_like(features[-1])], dim=-1)
            y = example.target.to(torch.float64) - features[-1]
            equations.setdefault(step, _NormalEquations(n)).add(
                rearrange(x, "... c i -> (...) 1 c i"),
                rearrange(y, "... c -> (...) 1 c"),
                self.config.per_channel,
            )
        if not equations:
            raise TrainingError(
                "the linear family got no teacher-forced examples to fit: the policy forecasts "
                "no step of this schedule with the family's history; check policy and steps"
            )
        residual = total = 0.0
        k = self.config.taps
        for step, eq in sorted(equations.items()):
            w, res, tot = eq.solve(self.config.ridge)
            if not bool(torch.isfinite(w).all()):
                raise TrainingError(
                    f"the closed-form fit of step {step} is not finite; the trajectories hold "
                    "non-finite values, or raise predictor.ridge"
                )
            n = eq.entries
            coef = torch.zeros_like(self.coef[step])
            weights = rearrange(w[..., :n], "c k -> k c") if self.config.per_channel else w[:n]
            coef[k - n :] = weights.to(coef.dtype)
            coef[-1] += 1.0
            self.coef[step] = coef
            self.bias[step] = w[..., n].to(self.bias.dtype)
            residual, total = residual + float(res), total + float(tot)
        return {"steps": float(len(equations)), "residual": residual / max(total, 1e-30)}

    def check_num_steps(self, num_steps: int) -> None:
        if num_steps != self.num_steps:
            raise ScheduleMismatchError(
                f"this linear predictor was fitted per step of a {self.num_steps}-step schedule and cannot run "
                f"{num_steps} steps; sample with {self.num_steps} steps, or fit it again at {num_steps}"
            )

    def check_time(self, step_index: int, t: float) -> None:
        if not 0 <= step_index < self.num_steps:
            raise ScheduleMismatchError(
                f"step {step_index} is outside the {self.num_steps}-step schedule this "
                f"linear predictor was fitted on; sample with {self.num_steps} steps"
            )
        expected = float(self.schedule[step_index])
        if not abs(t - expected) <= self.config.schedule_atol:
            raise ScheduleMismatchError(
                f"step {step_index} runs at t = {t:.6g} but the linear predictor was fitted with t = {expected:.6g} "
                f"there (tolerance {self.config.schedule_atol:g}); sample with the step count and scheduler "
                "settings it was fitted with, or fit it again"
            )

    def extra_repr(self) -> str:
        return f"taps={self.config.taps}, steps={self.num_steps}, per_channel={self.config.per_channel}"
