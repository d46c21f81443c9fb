"""``pixart``: the adapter for diffusers' ``PixArtTransformer2DModel`` (PixArt-Σ and PixArt-α).

Body: ``transformer_blocks`` (``BasicTransformerBlock``, image stream positional or keyword, returned
alone; the text enters by cross-attention). The head modulates ``norm_out`` inline with
``scale_shift_table``, so there is no ``normed`` tap: ``hidden`` (default) and ``output`` (channel-first
``(B, C, H, W)``, C = 2 × latent channels with learned sigma). The pipelines batch cond and uncond in
one call (``[uncond, cond]`` rows) and pass the raw timestep 0..999 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["PixArtAdapter"]


class PixArtAdapter(DiffusersBackbone):
    """``PixArtTransformer2DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:PixArtTransformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "BasicTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps(normed=None)
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("pixart", PixArtAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return PixArtAdapter.resolve(model)
