"""``cogview3plus``: the adapter for diffusers' ``CogView3PlusTransformer2DModel`` (CogView3-Plus-3B).

Body: ``transformer_blocks``; ``CogView3PlusTransformerBlock`` takes ``hidden_states,
encoder_hidden_states`` (keywords, or positionally under gradient checkpointing) and returns
``(hidden_states, encoder_hidden_states)``. The head is ``norm_out`` (``AdaLayerNormContinuous``) then
``proj_out`` and an unpatchify (output ``(B, C, H, W)``). The pipeline batches cond and uncond in one
call and passes the DDIM timestep 0..999 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["CogView3PlusAdapter"]


class CogView3PlusAdapter(DiffusersBackbone):
    """``CogView3PlusTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:CogView3PlusTransformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "CogView3PlusTransformerBlock": BlockIO(hidden_out=0, encoder_out=1),
    }
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("cogview3plus", CogView3PlusAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return CogView3PlusAdapter.resolve(model)
