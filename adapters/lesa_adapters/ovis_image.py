"""``ovis_image``: the adapter for diffusers' ``OvisImageTransformer2DModel`` (Ovis-Image).

Body: ``transformer_blocks`` then ``single_transformer_blocks``; both block classes take
``hidden_states, encoder_hidden_states`` (keywords) and return ``(encoder_hidden_states,
hidden_states)`` (the FLUX layout). The head is ``norm_out`` (``AdaLayerNormContinuous``) then
``proj_out`` (token layout). On forecast steps the RoPE table (``pos_embed``) is skipped. The pipeline
runs cond and uncond as separate calls in the cache contexts ``"cond"``/``"uncond"`` and passes t in
[0, 1] (``timestep_scale = 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["OvisImageAdapter"]

_JOINT = BlockIO(hidden_out=1, encoder_out=0)


class OvisImageAdapter(DiffusersBackbone):
    """``OvisImageTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:OvisImageTransformer2DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "OvisImageTransformerBlock": _JOINT,
        "OvisImageSingleTransformerBlock": _JOINT,
    }
    forecast_skips = ("pos_embed",)
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 1.0


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("ovis_image", OvisImageAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return OvisImageAdapter.resolve(model)
