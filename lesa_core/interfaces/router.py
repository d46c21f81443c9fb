"""The :class:`StageRouter` interface: flow time to stage index.

A router splits t ∈ [0, 1] (1 = pure noise) into ``num_stages`` stages with descending
``boundaries`` b_0 > b_1 > …: stage 0 is t > b_0, stage i is b_i < t ≤ b_{i-1}, the last stage is
t ≤ b_last. Routers are therefore total and monotone (stage never decreases as t falls). A router
plugin decides *where* the boundaries are (given, or fitted from trajectories with :meth:`fit`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from lesa_core.interfaces.base import PluginConfig


class StageRouter(ABC):
    """Base class of stage routers.

    :cvar Config: the router's pydantic parameter model.
    """

    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def boundaries(self) -> tuple[float, ...]:
        """Strictly descending stage boundaries in (0, 1); empty for a single stage."""

    @property
    def num_stages(self) -> int:
        """``len(boundaries) + 1``."""
        return len(self.boundaries) + 1

    def route(self, t: float) -> int:
        """The stage of flow time ``t`` (a host float)."""
        return sum(1 for b in self.boundaries if t <= b)

    def route_tensor(self, t: Tensor) -> Tensor:
        """The stage of ``t`` as an int64 tensor on ``t``'s device (no host synchronisation).

        Compared in float64, so it agrees with :meth:`route` on ``float(t)``.
        """
        if not self.boundaries:
            return torch.zeros_like(t, dtype=torch.int64)
        bounds = torch.tensor(self.boundaries, dtype=torch.float64).to(t.device, non_blocking=True)
        return (t.to(torch.float64).unsqueeze(-1) <= bounds).sum(-1)

    def fit(self, times: Tensor, change: Tensor) -> None:  # noqa: B027 - optional hook, default no-op
        """Optionally place boundaries from data before training.

        :param times: ``(S,)`` flow times of a reference trajectory.
        :param change: ``(S,)`` per-step relative change of the tapped feature at those times.
        """

    def state(self) -> dict[str, object]:
        """JSON-serialisable description stored in bundles (boundaries included)."""
        return {"boundaries": list(self.boundaries)}
