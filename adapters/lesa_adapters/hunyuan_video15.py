"""``hunyuan_video15``: the adapter for diffusers' ``HunyuanVideo15Transformer3DModel`` (HunyuanVideo 1.5
T2V and I2V).

Body: ``transformer_blocks``; ``HunyuanVideo15TransformerBlock`` is called positionally
``(hidden_states, encoder_hidden_states, temb, attention_mask, image_rotary_emb)`` and returns
``(hidden_states, encoder_hidden_states)``. The head is ``norm_out`` (``AdaLayerNormContinuous``) then
``proj_out`` and an unpatchify (output ``(B, C, F, H, W)``). On forecast steps the RoPE table (``rope``)
is skipped. The pipeline's guider runs cond and uncond as separate calls in the cache contexts
``pred_cond`` / ``pred_uncond`` and passes 0..1000 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["HunyuanVideo15Adapter"]


class HunyuanVideo15Adapter(DiffusersBackbone):
    """``HunyuanVideo15Transformer3DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:HunyuanVideo15Transformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "HunyuanVideo15TransformerBlock": BlockIO(hidden_out=0, encoder_out=1),
    }
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("hunyuan_video15", HunyuanVideo15Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return HunyuanVideo15Adapter.resolve(model)
