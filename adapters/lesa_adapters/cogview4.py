"""``cogview4``: the adapter for diffusers' ``CogView4Transformer2DModel`` (CogView4-6B).

Body: ``transformer_blocks``; ``CogView4TransformerBlock`` is called positionally ``(hidden_states,
encoder_hidden_states, temb, image_rotary_emb, ...)`` and returns ``(hidden_states,
encoder_hidden_states)``. The head is ``norm_out`` (``CogView4AdaLayerNormContinuous``) then ``proj_out``
and an unpatchify (output ``(B, C, H, W)``). On forecast steps the RoPE table (``rope``) is skipped. The
pipeline runs cond and uncond as separate calls in the cache contexts ``"cond"``/``"uncond"`` and
passes 0..1000 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["CogView4Adapter"]


class CogView4Adapter(DiffusersBackbone):
    """``CogView4Transformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:CogView4Transformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "CogView4TransformerBlock": BlockIO(hidden_out=0, encoder_out=1),
    }
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("cogview4", CogView4Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return CogView4Adapter.resolve(model)
