"""The :class:`BackboneAdapter` interface: what the runtime must know about one DiT family.

An adapter *describes* a model; it never forks or patches it. It knows:

* which model classes it handles (:meth:`BackboneAdapter.claims`, decided with ``isinstance``);
* the **taps** it offers — named places where the forecast feature lives (``hidden``, ``normed``,
  ``output``, ...) — and the default one;
* how to read flow time t ∈ [0, 1] from the ``timestep`` argument of a forward call, and back;
* how to attach the runtime to one model *instance* so that, on a forecast step, the body does not
  run and the head turns the forecast tap into the model output (:meth:`BackboneAdapter.attach`).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from lesa_core.interfaces.policy import CachePolicy, Decision
from lesa_core.interfaces.predictor import ForecastInput, Predictor
from lesa_core.interfaces.router import StageRouter
from lesa_core.replay import FullStepReplay


@dataclass(frozen=True)
class TapSpec:
    """One place a backbone can be tapped.

    :ivar name: short identifier used in configs (``hidden``).
    :ivar description: where exactly, in one sentence.
    """

    name: str
    description: str


@dataclass(frozen=True)
class StepEvent:
    """What the runtime reports to an observer after each step of a trajectory.

    :ivar context: the cache context name (``cond``, ``uncond``, or ``default``).
    :ivar step_index: 0-based step within the trajectory.
    :ivar t: ``()`` flow time of the step, on the model's device.
    :ivar decision: what happened (a non-finite forecast that fell back counts as ``COMPUTE``).
    :ivar tap: the tapped feature of the step (the real one on full steps, the forecast otherwise);
        detached; observers must not modify it.
    :ivar inputs: the predictor's input on forecast steps, else ``None``.
    :ivar fallback: ``True`` if a non-finite forecast was replaced by a full step.
    :ivar probe: the probe point's output at this step (detached), when the runtime runs a probe
        (:attr:`Predictor.uses_probe`), else ``None``.
    """

    context: str
    step_index: int
    t: Tensor
    decision: Decision
    tap: Tensor
    inputs: ForecastInput | None = None
    fallback: bool = False
    probe: Tensor | None = None


@dataclass
class RuntimeComponents:
    """What an adapter's runtime needs, assembled by :func:`lesa_core.attach` from a run config.

    :ivar predictor: the forecaster (a stage-aware composite when the family is stage-aware).
    :ivar make_policy: builds a fresh cache policy; the runtime keeps one per cache context.
    :ivar router: the run's stage router (used for statistics; routing happens in the predictor).
    :ivar tap: the tap name to forecast.
    :ivar guard_non_finite: on a non-finite forecast, run the body for that step instead.
    :ivar observer: called with a :class:`StepEvent` after every step (collection and closed-loop
        training use it); ``None`` on the fast path.
    :ivar replay: full steps taken before a trajectory's first forecast are looked up here by their inputs
        and handed back instead of run (and recorded when not found): :class:`~lesa_core.replay.FullStepReplay`,
        for runs of one frozen model that differ only in the predictor (closed-loop validation); ``None``
        (the default): every step runs. A runtime may ignore it; results are the same either way.
    """

    predictor: Predictor
    make_policy: Callable[[], CachePolicy]
    router: StageRouter
    tap: str
    guard_non_finite: bool = True
    observer: Callable[[StepEvent], None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    replay: FullStepReplay | None = None


class Attachment(ABC):
    """A live attachment of the runtime to one model instance; removable and observable."""

    @abstractmethod
    def remove(self) -> None:
        """Detach every hook; afterwards the model behaves bit-identically to before. Idempotent."""

    @abstractmethod
    def reset(self) -> None:
        """Forget all trajectories in progress (every cache context)."""

    @abstractmethod
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per cache-context statistics of the most recent trajectory: ``full_steps``,
        ``forecast_steps``, ``fallback_steps``, ``cache_bytes``, ``seconds`` and the step decisions."""


class BackboneAdapter(ABC):
    """Base class of backbone adapters. One instance describes one model instance.

    :cvar taps: the taps this backbone offers, by name.
    :cvar default_tap: the tap used when the run config names none.
    :cvar timestep_scale: flow time t = ``timestep * timestep_scale`` (FLUX and Qwen-Image pipelines
        pass t already in [0, 1]: 1.0; HunyuanVideo passes 0..1000: 0.001).
    :cvar latent_argument: the forward argument carrying the noisy latents.
    :cvar timestep_argument: the forward argument carrying the timestep.
    :cvar batched_guidance: the guidance branches a pipeline concatenates along the batch, in batch order
        (SD3, PixArt, Sana, CogVideoX: ``("uncond", "cond")``); empty if the pipeline runs each branch in a
        call (and cache context) of its own. The runtime treats each branch's rows as a trajectory of its own
        (its observer reports them as separate contexts), when the call's latent holds equal chunks.
    :cvar probe_blocks: the default probe point of a probe-conditioned predictor (one whose
        ``uses_probe`` is set and whose config names no k): the output of the first k body blocks.
    :cvar extra_call_arguments: forward arguments whose presence makes a call an *extra* call of the step
        (SD3's ``skip_layers`` of skip-layer guidance), each mapped to the pipeline option that causes it
        (``skip_guidance_layers``); such calls run in a cache context of their own, and training refuses
        a sampling call that sets the option.
    """

    taps: ClassVar[Mapping[str, TapSpec]] = {}
    default_tap: ClassVar[str] = "hidden"
    timestep_scale: ClassVar[float] = 1.0
    latent_argument: ClassVar[str] = "hidden_states"
    timestep_argument: ClassVar[str] = "timestep"
    batched_guidance: ClassVar[tuple[str, ...]] = ()
    extra_call_arguments: ClassVar[Mapping[str, str]] = {}
    probe_blocks: ClassVar[int] = 1

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    @abstractmethod
    def claims(cls, model: Any) -> bool:
        """``True`` if this adapter handles ``model`` (decided with ``isinstance``)."""

    @abstractmethod
    def tap_channels(self, tap: str) -> int:
        """Size of the last axis of the feature at ``tap``."""

    @abstractmethod
    def attach(self, components: RuntimeComponents) -> Attachment:
        """Attach the runtime to :attr:`model` and return the live :class:`Attachment`."""

    def tap_head(self, tap: str) -> Callable[[Tensor], Tensor] | None:
        """The part of the model after ``tap`` as a function of the tap alone, if it is one.

        It maps a feature at ``tap`` (``(..., tokens, channels)``) to the model output of those tokens,
        token-wise, with the model's frozen weights and no per-step conditioning (an output projection;
        the identity for the output tap), so that training can measure a forecast's error where it
        acts (``training.loss: latent``). ``None`` (the default) when the head depends on the step
        (e.g. an adaptive norm of the timestep embedding) or is not known.
        """
        self.check_tap(tap)
        return None

    def tap_is_token_major(self, tap: str) -> bool:
        """``True`` if the feature at ``tap`` is ``(batch, tokens, channels)`` (token subsampling and
        ``training.loss: latent`` need it); ``False`` for a channels-first model output ``(B, C, ...)``."""
        self.check_tap(tap)
        return True

    # -- time -------------------------------------------------------------------------------
    def time_from_timestep(self, timestep: Tensor) -> Tensor:
        """Flow time t ∈ [0, 1] from the ``timestep`` forward argument (device op, no sync)."""
        return timestep.float() * self.timestep_scale

    def timestep_from_time(self, t: Tensor) -> Tensor:
        """The ``timestep`` argument for flow time ``t`` (inverse of :meth:`time_from_timestep`)."""
        return t / self.timestep_scale

    # -- identity ---------------------------------------------------------------------------
    def check_tap(self, tap: str) -> str:
        """Return ``tap`` if offered, else raise ``ValueError`` listing the offered taps."""
        if tap not in self.taps:
            raise ValueError(
                f"{type(self).__name__} offers taps {sorted(self.taps)}; '{tap}' is not one of them — set `tap` "
                f"to one of those, or leave it out for the default '{self.default_tap}'"
            )
        return tap

    def model_class(self) -> str:
        """Fully qualified class name of the model."""
        cls = type(self.model)
        return f"{cls.__module__}.{cls.__qualname__}"

    def model_config(self) -> dict[str, Any]:
        """The architecture-defining config of the model (diffusers' ``model.config`` by default)."""
        config = getattr(self.model, "config", None)
        if config is None:
            return {}
        items = dict(config)
        return {k: v for k, v in items.items() if not k.startswith("_")}

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`model_class` and :meth:`model_config`; bundles record it."""
        payload = json.dumps({"class": self.model_class(), "config": self.model_config()}, sort_keys=True,
                             default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
