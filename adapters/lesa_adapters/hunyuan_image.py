"""``hunyuan_image``: the adapter for diffusers' ``HunyuanImageTransformer2DModel`` (HunyuanImage 2.1 and
its refiner).

Body: ``transformer_blocks`` then ``single_transformer_blocks``; both block classes are called
positionally ``(hidden_states, encoder_hidden_states, temb, ...)`` and return ``(hidden_states,
encoder_hidden_states)``. The head is ``norm_out`` (``AdaLayerNormContinuous``) then ``proj_out`` and an
unpatchify (output ``(B, C, H, W)``). On forecast steps the RoPE table (``rope``) is skipped. The
pipeline's guider runs cond and uncond as separate calls in the cache contexts ``pred_cond`` /
``pred_uncond``, and passes 0..1000 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["HunyuanImageAdapter"]

_BLOCK = BlockIO(hidden_out=0, encoder_out=1)


class HunyuanImageAdapter(DiffusersBackbone):
    """``HunyuanImageTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:HunyuanImageTransformer2DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "HunyuanImageTransformerBlock": _BLOCK,
        "HunyuanImageSingleTransformerBlock": _BLOCK,
    }
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("hunyuan_image", HunyuanImageAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return HunyuanImageAdapter.resolve(model)
