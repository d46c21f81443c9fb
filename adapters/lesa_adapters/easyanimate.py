"""``easyanimate``: the adapter for diffusers' ``EasyAnimateTransformer3DModel`` (EasyAnimate V5.1).

Body: ``transformer_blocks``; ``EasyAnimateTransformerBlock`` is called positionally ``(hidden_states,
encoder_hidden_states, temb, image_rotary_emb)`` and returns ``(hidden_states,
encoder_hidden_states)``. The head is ``norm_final``, ``norm_out`` (``AdaLayerNorm`` with the timestep
embedding), ``proj_out`` and an unpatchify (output ``(B, C, F, H, W)``): ``normed`` maps to the output
through ``proj_out``. The pipeline batches cond and uncond in one call and passes 0..1000
(``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["EasyAnimateAdapter"]


class EasyAnimateAdapter(DiffusersBackbone):
    """``EasyAnimateTransformer3DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:EasyAnimateTransformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "EasyAnimateTransformerBlock": BlockIO(hidden_out=0, encoder_out=1),
    }
    output_channels_first = True
    taps = standard_taps()
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("easyanimate", EasyAnimateAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return EasyAnimateAdapter.resolve(model)
