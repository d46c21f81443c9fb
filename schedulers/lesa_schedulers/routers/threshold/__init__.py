"""``threshold``: stages split by descending boundaries on flow time (LESA: 0.9 and 0.5)."""

from __future__ import annotations

from pydantic import Field, field_validator

from lesa_core import hookimpl
from lesa_core.interfaces import PluginConfig, StageRouter
from lesa_core.registry import Registry

__all__ = ["ThresholdConfig", "ThresholdRouter"]


class ThresholdConfig(PluginConfig):
    """:ivar boundaries: strictly descending values in (0, 1); ``[]`` means a single stage.
    LESA uses ``[0.9, 0.5]`` (FLUX, HunyuanVideo) and ``[0.9, 0.4]`` (Qwen-Image)."""

    boundaries: tuple[float, ...] = Field((0.9, 0.5))

    @field_validator("boundaries")
    @classmethod
    def _descending(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < b < 1.0 for b in value):
            raise ValueError("every boundary must lie strictly between 0 and 1")
        if any(a <= b for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("boundaries must be strictly descending, e.g. [0.9, 0.5]")
        return value


class ThresholdRouter(StageRouter):
    """Stage 0 is t > b_0, stage i is b_i < t ≤ b_{i-1}, the last stage is t ≤ b_last."""

    Config = ThresholdConfig
    config: ThresholdConfig

    @property
    def boundaries(self) -> tuple[float, ...]:
        return tuple(self.config.boundaries)


@hookimpl
def lesa_register_stage_routers(registry: Registry[type[ThresholdRouter]]) -> None:
    registry.add("threshold", ThresholdRouter, default=True)
