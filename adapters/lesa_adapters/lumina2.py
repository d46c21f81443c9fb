"""``lumina2``: the adapter for diffusers' ``Lumina2Transformer2DModel`` (Lumina-Image 2.0).

Body: ``layers`` (the joint blocks over the concatenated caption and image tokens; the
``noise_refiner`` and ``context_refiner`` blocks before them are stem). ``Lumina2TransformerBlock`` is
called positionally ``(hidden_states, attention_mask, freqs_cis, temb)`` and returns the stream alone.
``norm_out`` (``LuminaLayerNormContinuous``) already projects to the output width, so the taps are
``hidden`` (default) and ``output`` (``(B, C, H, W)``). The width is ``config.hidden_size``. The pipeline
passes t **rising** from 0 (noise) to 1 (image), so flow time is ``1 - timestep``; with guidance it
runs cond and uncond as separate calls **without** a cache context (see docs/adapters.md, *Limits*).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["Lumina2Adapter"]


class Lumina2Adapter(DiffusersBackbone):
    """``Lumina2Transformer2DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:Lumina2Transformer2DModel",)
    body = ("layers",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "Lumina2TransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps(normed=None)
    default_tap = "hidden"
    timestep_scale = 1.0

    def hidden_size(self) -> int:
        """``config.hidden_size``."""
        config: Any = getattr(self.model, "config", None)
        return int(config.hidden_size)

    def time_from_timestep(self, timestep: Tensor) -> Tensor:
        """Flow time ``1 - timestep`` (the pipeline passes 0 at pure noise)."""
        return 1.0 - timestep.float()

    def timestep_from_time(self, t: Tensor) -> Tensor:
        """The pipeline's ``timestep`` for flow time ``t``: ``1 - t``."""
        return 1.0 - t


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("lumina2", Lumina2Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return Lumina2Adapter.resolve(model)
