"""Stage-aware composition: one expert predictor per stage of a :class:`StageRouter`.

The expert is chosen **on the device** from the flow time (no host synchronisation: ``index_select``
with a device index, never ``tensor[device_index]``, which reads the index on the host). When every
expert is a :class:`~lesa_core.interfaces.LinearPredictor`, only the experts' coefficients are
computed and selected, and the history is read once; otherwise every expert forecasts and the right
forecast is selected. The coefficients go through :func:`lesa_core.interfaces.coefficients.fast_coefficients`
(memoised for host inputs, one CUDA-graph replay for CUDA inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from lesa_core.interfaces import ForecastInput, LinearPredictor, Predictor, PredictorContext, StageRouter
from lesa_core.interfaces.coefficients import fast_coefficients
from lesa_core.interfaces.predictor import HistoryMode, PredictorConfig, combine


class StageAwarePredictor(Predictor):
    """A predictor made of ``router.num_stages`` experts of one family.

    :param experts: one predictor per stage, in stage order (stage 0 = highest noise).
    :param router: maps the forecast time to the expert index.
    """

    def __init__(self, experts: Sequence[Predictor], router: StageRouter) -> None:
        if len(experts) != router.num_stages:
            raise ValueError(f"{len(experts)} experts for a router with {router.num_stages} stages")
        modes = {e.history_mode for e in experts}
        if len(modes) != 1:
            raise ValueError(f"experts disagree on the history mode: {sorted(modes)}")
        super().__init__(experts[0].config, PredictorContext(0, router.num_stages, experts[0].context.channels))
        self.experts = nn.ModuleList(experts)
        self.router = router
        self._mode: HistoryMode = experts[0].history_mode
        # coefficients are selected on the device when every expert is linear with coefficients of one
        # shape; otherwise every expert forecasts and the forecast is selected
        shapes = {e.coefficient_shape for e in experts if isinstance(e, LinearPredictor)}
        self._linear = all(isinstance(e, LinearPredictor) for e in experts) and len(shapes) == 1
        self.register_buffer(
            "boundaries", torch.tensor(router.boundaries, dtype=torch.float64), persistent=False
        )

    @property
    def history_mode(self) -> HistoryMode:
        return self._mode

    @property
    def expert_list(self) -> list[Predictor]:
        """The experts, in stage order."""
        return [cast(Predictor, e) for e in self.experts]

    @property
    def history_size(self) -> int:
        return max(e.history_size for e in self.expert_list)

    @property
    def min_history(self) -> int:
        return max(e.min_history for e in self.expert_list)

    def stage_of(self, t: Tensor) -> Tensor:
        """Stage index of ``t`` on its device."""
        boundaries = cast(Tensor, self.boundaries)
        if boundaries.numel() == 0:
            return torch.zeros((), dtype=torch.int64, device=t.device)
        return (t.to(torch.float64) <= boundaries.to(t.device)).sum()

    def forward(self, inputs: ForecastInput) -> Tensor:
        if self._linear:
            return combine(inputs.features, *fast_coefficients(self, self._selected_coefficients, inputs))
        n = len(inputs.features)
        outputs = [e(inputs.last(min(e.history_size, n))) for e in self.expert_list]
        return torch.index_select(torch.stack(outputs), 0, self.stage_of(inputs.t).reshape(1))[0]

    def _selected_coefficients(self, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
        """Every expert's ``(coef, bias)`` (older entries padded with zero weights), the one of the
        stage of ``inputs.t`` selected on the device (``index_select``: no host synchronisation)."""
        n = len(inputs.features)
        coefs, biases = [], []
        for expert in self.expert_list:
            k = min(expert.history_size, n)
            assert isinstance(expert, LinearPredictor)
            coef, bias = expert.coefficients(inputs.last(k))
            if k < n:  # experts reading fewer taps weigh the older ones by zero
                coef = torch.cat([coef.new_zeros((n - k, *coef.shape[1:])), coef])
            coefs.append(coef)
            biases.append(bias)
        if len({c.shape for c in coefs}) != 1 or len({b.shape for b in biases}) != 1:
            raise ValueError(
                f"the experts' coefficients differ in shape ({sorted({tuple(c.shape) for c in coefs})}) although "
                "their coefficient_shape agrees; a LinearPredictor's coefficient_shape must match what "
                "coefficients() returns"
            )
        stage = self.stage_of(inputs.t).reshape(1)
        return (torch.index_select(torch.stack(coefs), 0, stage)[0],
                torch.index_select(torch.stack(biases), 0, stage)[0])

    def check_num_steps(self, num_steps: int) -> None:
        for expert in self.expert_list:
            expert.check_num_steps(num_steps)

    def check_time(self, step_index: int, t: float) -> None:
        for expert in self.expert_list:
            expert.check_time(step_index, t)


def build_predictor(
    cls: type[Predictor], config: PredictorConfig, router: StageRouter, channels: int | None
) -> Predictor:
    """Instantiate ``cls``: a :class:`StageAwarePredictor` of one expert per stage when the family is
    stage-aware and the router has more than one stage, else a single instance."""
    if cls.stage_aware and router.num_stages > 1:
        experts = [cls(config, PredictorContext(stage, router.num_stages, channels))
                   for stage in range(router.num_stages)]
        return StageAwarePredictor(experts, router)
    return cls(config, PredictorContext(0, router.num_stages, channels))
