"""``ltx_video``: the adapter for diffusers' ``LTXVideoTransformer3DModel`` (LTX-Video 0.9.x).

Body: ``transformer_blocks``; ``LTXVideoTransformerBlock`` takes ``hidden_states`` (keyword, or first
positionally) and returns it alone. The head modulates ``norm_out`` inline, so there is no ``normed``
tap: ``hidden`` (default) and ``output`` (token layout ``(B, tokens, C)``: the pipeline packs the
latents). On forecast steps the RoPE table (``rope``) only feeds the body and is skipped. The pipelines
batch cond and uncond in one call in the cache context ``"cond_uncond"`` and pass 0..1000
(``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["LTXVideoAdapter"]


class LTXVideoAdapter(DiffusersBackbone):
    """``LTXVideoTransformer3DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:LTXVideoTransformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "LTXVideoTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    forecast_skips = ("rope",)
    taps = standard_taps(normed=None)
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("ltx_video", LTXVideoAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return LTXVideoAdapter.resolve(model)
