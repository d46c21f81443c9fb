"""``generic``: an adapter for a diffusers DiT that no adapter claims, derived from the model itself.

Opt-in only (``adapter: generic`` in the run config; it never answers ``lesa_resolve_adapter``). It claims
any ``nn.Module`` whose ``forward`` takes the latent and timestep arguments and that holds a block list
(an ``nn.ModuleList`` child). Nothing is declared by hand: on the first forward call the runtime probes the
model, derives the body (the block lists that ran, in order), each block class's stream layout, the
output layout, the taps (``hidden``; ``normed`` when ``norm_out`` and ``proj_out`` exist, with ``proj_out`` as its head only
when it alone reproduces the output's values; ``output``) and the timestep's units, and proves them against
a full forward — a full step must be bit-identical and a forecast step fed the real tap must reproduce
it — before it forecasts anything; a model that fails the proof is refused with an ``AttachError``
(:mod:`lesa_adapters.engine.introspect`).

What it cannot know before that call: :meth:`tap_head` offers only the ``output`` tap's identity (a bundle
trained with ``training.loss: latent`` needs a declared adapter), and no stem module is skipped on forecast
steps (a declared adapter's ``forecast_skips`` saves that work too).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

from lesa_adapters.engine.declarations import DiffusersBackbone, ModelOutputTap, standard_taps
from lesa_adapters.engine.introspect import DeferredAttachment, body_lists
from lesa_core import hookimpl
from lesa_core.interfaces import RuntimeComponents, TapSpec
from lesa_core.registry import Registry

__all__ = ["GenericAdapter"]


class GenericAdapter(DiffusersBackbone):
    """Any diffusers DiT with a block list, by introspection; opt-in as ``adapter: generic``."""

    taps: ClassVar[dict[str, TapSpec]] = standard_taps(head=None)
    default_tap = "hidden"
    batched_guidance = ("uncond", "cond")  # diffusers' order when a pipeline batches its guidance

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        if not all(isinstance(getattr(model, name, None), nn.Module) for name in ("norm_out", "proj_out")):
            # this instance offers fewer taps than the class: an instance attribute shadows the class's
            vars(self)["taps"] = {name: spec for name, spec in type(self).taps.items() if name != "normed"}

    @classmethod
    def claims(cls, model: Any) -> bool:
        if not isinstance(model, nn.Module) or not body_lists(model):
            return False
        params = inspect.signature(type(model).forward).parameters
        return cls.latent_argument in params and cls.timestep_argument in params

    def tap_channels(self, tap: str) -> int:
        spec = self.taps[self.check_tap(tap)]
        if isinstance(spec, ModelOutputTap):
            config = getattr(self.model, "config", None)
            out = getattr(config, "out_channels", None) or getattr(config, "in_channels", None)
            if out is not None:
                return int(out)
        return self.hidden_size()

    def hidden_size(self) -> int:
        config = getattr(self.model, "config", None)
        size = getattr(config, "hidden_size", None)
        if isinstance(size, int):
            return size
        proj = getattr(self.model, "proj_out", None)
        if config is None and isinstance(proj, nn.Linear):
            return int(proj.in_features)
        return super().hidden_size()

    def tap_head(self, tap: str) -> Callable[[Tensor], Tensor] | None:
        spec = self.taps[self.check_tap(tap)]
        return (lambda feature: feature) if isinstance(spec, ModelOutputTap) else None

    def tap_is_token_major(self, tap: str) -> bool:
        spec = self.taps[self.check_tap(tap)]
        return not isinstance(spec, ModelOutputTap)  # the output's layout is known after the first call

    def attach(self, components: RuntimeComponents) -> DeferredAttachment:  # type: ignore[override]
        """Install the placeholder; the first call derives, proves and attaches the engine."""
        return DeferredAttachment(self, components)


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("generic", GenericAdapter)
