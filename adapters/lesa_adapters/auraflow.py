"""``auraflow``: the adapter for diffusers' ``AuraFlowTransformer2DModel`` (AuraFlow 0.x).

Body: ``joint_transformer_blocks`` (two streams, keyword calls, return ``(encoder_hidden_states,
hidden_states)``) then ``single_transformer_blocks`` (the concatenated sequence, returned alone). The
head is ``norm_out`` (``AuraFlowPreFinalBlock``: norm and timestep modulation) on the image tokens,
then ``proj_out`` and an unpatchify (output ``(B, C, H, W)``). The pipeline batches cond and uncond in
one call and passes t in [0, 1] (``timestep_scale = 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["AuraFlowAdapter"]


class AuraFlowAdapter(DiffusersBackbone):
    """``AuraFlowTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:AuraFlowTransformer2DModel",)
    body = ("joint_transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "AuraFlowJointTransformerBlock": BlockIO(hidden_out=1, encoder_out=0),
        "AuraFlowSingleTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 1.0


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("auraflow", AuraFlowAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return AuraFlowAdapter.resolve(model)
