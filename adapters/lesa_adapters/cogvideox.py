"""``cogvideox``: the adapter for diffusers' ``CogVideoXTransformer3DModel`` (CogVideoX 2B/5B, 1.5, I2V).

Body: ``transformer_blocks``; ``CogVideoXBlock`` takes ``hidden_states, encoder_hidden_states``
(keywords, or positionally under gradient checkpointing) and returns ``(hidden_states,
encoder_hidden_states)``. The head is ``norm_final``, ``norm_out`` (``AdaLayerNorm`` with the timestep
embedding), ``proj_out`` and an unpatchify: ``normed`` maps to the output through ``proj_out``. The
output is ``(B, F, C, H, W)`` (channels at dim 2; ``output_channels`` is ``out_channels``). The pipelines
batch cond and uncond in one call in the cache context ``"cond_uncond"`` and pass the DDIM timestep
0..999 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["CogVideoXAdapter"]


class CogVideoXAdapter(DiffusersBackbone):
    """``CogVideoXTransformer3DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:CogVideoXTransformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "CogVideoXBlock": BlockIO(hidden_out=0, encoder_out=1),
    }
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("cogvideox", CogVideoXAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return CogVideoXAdapter.resolve(model)
