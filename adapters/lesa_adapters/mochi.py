"""``mochi``: the adapter for diffusers' ``MochiTransformer3DModel`` (Mochi 1).

Body: ``transformer_blocks``; ``MochiTransformerBlock`` takes ``hidden_states, encoder_hidden_states``
(keywords, or positionally under gradient checkpointing) and returns ``(hidden_states,
encoder_hidden_states)``. The head is ``norm_out`` (``AdaLayerNormContinuous``) then ``proj_out`` and an
unpatchify (output ``(B, C, F, H, W)``). On forecast steps the RoPE table (``rope``) is skipped. The
pipeline batches cond and uncond in one call in the cache context ``"cond_uncond"`` and passes
1000..0 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["MochiAdapter"]


class MochiAdapter(DiffusersBackbone):
    """``MochiTransformer3DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:MochiTransformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "MochiTransformerBlock": BlockIO(hidden_out=0, encoder_out=1),
    }
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("mochi", MochiAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return MochiAdapter.resolve(model)
