"""``bria``: the adapter for diffusers' ``BriaTransformer2DModel`` (Bria 3.2).

A FLUX-style body: ``transformer_blocks`` then ``single_transformer_blocks``; both block classes take
``hidden_states, encoder_hidden_states`` (keywords) and return ``(encoder_hidden_states,
hidden_states)``. The head is ``norm_out`` (``AdaLayerNormContinuous``) then ``proj_out`` (token
layout: the pipeline packs the latents). On forecast steps the RoPE table (``pos_embed``) is skipped.
The pipeline batches cond and uncond in one call and passes the raw timestep 0..1000
(``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["BriaAdapter"]

_JOINT = BlockIO(hidden_out=1, encoder_out=0)


class BriaAdapter(DiffusersBackbone):
    """``BriaTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:BriaTransformer2DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "BriaTransformerBlock": _JOINT,
        "BriaSingleTransformerBlock": _JOINT,
    }
    forecast_skips = ("pos_embed",)
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("bria", BriaAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return BriaAdapter.resolve(model)
