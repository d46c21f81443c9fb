"""The :class:`CachePolicy` interface: per step, compute the body or forecast it.

A policy sees only host-side facts about the step (:class:`StepInfo`) and must decide the same way
on every process for the same inputs, so that ranks under context parallelism agree without
communication. Policies may keep state across the steps of one trajectory; :meth:`CachePolicy.reset`
returns them to their initial behaviour.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

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


class CachePolicy(ABC):
    """Base class of cache policies.

    :cvar Config: the policy's pydantic parameter model.
    """

    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abstractmethod
    def decide(self, step: StepInfo) -> Decision:
        """Decide one step. Called exactly once per step, in step order."""

    def reset(self) -> None:  # noqa: B027 - stateless policies need nothing
        """Forget the current trajectory."""

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
