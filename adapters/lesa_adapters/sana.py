"""``sana``: the adapter for diffusers' ``SanaTransformer2DModel`` (Sana, Sana-Sprint).

Body: ``transformer_blocks``; ``SanaTransformerBlock`` is called positionally ``(hidden_states,
attention_mask, encoder_hidden_states, ...)`` and returns the image stream alone. The head is
``norm_out`` (``SanaModulatedNorm``: norm and timestep modulation) then ``proj_out`` and an unpatchify,
so ``normed`` maps to the output through ``proj_out`` token-wise. The pipeline batches cond and uncond
in one call and passes 0..1000 (times ``config.timestep_scale``; ``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["SanaAdapter"]


class SanaAdapter(DiffusersBackbone):
    """``SanaTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:SanaTransformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "SanaTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("sana", SanaAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return SanaAdapter.resolve(model)
