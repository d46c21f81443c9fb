"""``chroma``: the adapter for diffusers' ``ChromaTransformer2DModel`` (Chroma, Chroma1-HD).

Body: ``transformer_blocks`` (two streams, keyword calls, return ``(encoder_hidden_states,
hidden_states)``) then ``single_transformer_blocks`` (the concatenated text and image sequence,
returned alone). The head is ``norm_out`` (``ChromaAdaLayerNormContinuousPruned``) on the image tokens
then ``proj_out`` (token layout). On forecast steps the RoPE table (``pos_embed``) is skipped. The
pipeline passes t in [0, 1] (``timestep_scale = 1``) and runs cond and uncond as separate calls
**without** a cache context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["ChromaAdapter"]


class ChromaAdapter(DiffusersBackbone):
    """``ChromaTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:ChromaTransformer2DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "ChromaTransformerBlock": BlockIO(hidden_out=1, encoder_out=0),
        "ChromaSingleTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    forecast_skips = ("pos_embed",)
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 1.0


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("chroma", ChromaAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return ChromaAdapter.resolve(model)
