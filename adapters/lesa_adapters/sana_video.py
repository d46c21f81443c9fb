"""``sana_video``: the adapter for diffusers' ``SanaVideoTransformer3DModel`` (Sana-Video).

Body: ``transformer_blocks``; ``SanaVideoTransformerBlock`` is called positionally ``(hidden_states,
attention_mask, encoder_hidden_states, ...)`` and returns the image stream alone. The head is
``norm_out`` (``SanaModulatedNorm``) then ``proj_out`` and an unpatchify (output ``(B, C, F, H, W)``).
On forecast steps the RoPE table (``rope``) is skipped. The pipeline batches cond and uncond in one
call and passes 0..1000 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["SanaVideoAdapter"]


class SanaVideoAdapter(DiffusersBackbone):
    """``SanaVideoTransformer3DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:SanaVideoTransformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "SanaVideoTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("sana_video", SanaVideoAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return SanaVideoAdapter.resolve(model)
