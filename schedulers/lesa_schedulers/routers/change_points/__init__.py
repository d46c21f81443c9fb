"""``change_points``: stage boundaries placed from data instead of by hand.

LESA's stages (t > 0.9, 0.5 < t ≤ 0.9, t ≤ 0.5) were set by hand from trajectory analysis. This router
finds them: given the per-step relative change of the tapped feature along reference trajectories,
it splits the steps into ``num_stages`` contiguous segments minimising the within-segment variance of
log(change) (optimal 1-D segmentation by dynamic programming) and puts each boundary halfway between
the flow times of the two steps it separates. The trainer calls :meth:`fit` after collection and
stores the fitted boundaries in the bundle, so inference needs no data.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from torch import Tensor

from lesa_core import hookimpl
from lesa_core.interfaces import PluginConfig, StageRouter
from lesa_core.registry import Registry

__all__ = ["ChangePointConfig", "ChangePointRouter", "segment"]


class ChangePointConfig(PluginConfig):
    """:ivar num_stages: how many stages to find. :ivar boundaries: fitted boundaries (filled by
    training; ``None`` before). :ivar min_steps: the fewest steps a stage may hold."""

    num_stages: int = Field(3, ge=1, le=8)
    boundaries: tuple[float, ...] | None = None
    min_steps: int = Field(3, ge=1)

    @field_validator("boundaries")
    @classmethod
    def _descending(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and any(not 0.0 < b < 1.0 for b in value):
            raise ValueError("every boundary must lie strictly between 0 and 1 (flow time, 1 = noise)")
        if value is not None and any(a <= b for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("boundaries must be strictly descending, e.g. [0.9, 0.5]")
        return value


def segment(values: list[float], parts: int, min_len: int) -> list[int]:
    """Start indices (excluding 0) of the ``parts`` contiguous segments of ``values`` with the least
    total squared deviation from their segment means."""
    n = len(values)
    parts = max(1, min(parts, n // max(min_len, 1)))
    prefix = [0.0]
    prefix_sq = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
        prefix_sq.append(prefix_sq[-1] + v * v)

    def cost(i: int, j: int) -> float:  # segment values[i:j]
        s, sq, m = prefix[j] - prefix[i], prefix_sq[j] - prefix_sq[i], j - i
        return sq - s * s / m

    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    back = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for k in range(1, parts + 1):
        for j in range(k * min_len, n + 1):
            for i in range((k - 1) * min_len, j - min_len + 1):
                if best[k - 1][i] < inf and best[k - 1][i] + cost(i, j) < best[k][j]:
                    best[k][j] = best[k - 1][i] + cost(i, j)
                    back[k][j] = i
    cuts, j = [], n
    for k in range(parts, 0, -1):
        j = back[k][j]
        cuts.append(j)
    return sorted(c for c in cuts if c > 0)


class ChangePointRouter(StageRouter):
    """Boundaries fitted to where the tap's per-step change shifts regime."""

    Config = ChangePointConfig
    config: ChangePointConfig

    def __init__(self, config: ChangePointConfig) -> None:
        super().__init__(config)
        self._boundaries = tuple(config.boundaries) if config.boundaries is not None else None

    @property
    def boundaries(self) -> tuple[float, ...]:
        if self._boundaries is None:  # not fitted yet: LESA's hand-set stages as a fallback
            return (0.9, 0.5)[: self.config.num_stages - 1]
        return self._boundaries

    def fit(self, times: Tensor, change: Tensor) -> None:
        t = times.double().tolist()
        values = [math.log(max(float(c), 1e-12)) for c in change.double().tolist()]
        cuts = segment(values, self.config.num_stages, self.config.min_steps)
        bounds = [(t[c - 1] + t[c]) / 2 for c in cuts]
        self._boundaries = tuple(sorted({round(b, 6) for b in bounds if 0.0 < b < 1.0}, reverse=True))

    def state(self) -> dict[str, object]:
        return {"num_stages": self.config.num_stages, "min_steps": self.config.min_steps,
                "boundaries": list(self.boundaries)}


@hookimpl
def lesa_register_stage_routers(registry: Registry[type[ChangePointRouter]]) -> None:
    registry.add("change_points", ChangePointRouter)
