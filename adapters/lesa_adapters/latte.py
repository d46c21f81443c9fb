"""``latte``: the adapter for diffusers' ``LatteTransformer3DModel`` (Latte-1).

Body: ``transformer_blocks`` (spatial) and ``temporal_transformer_blocks``, run interleaved, every
block a ``BasicTransformerBlock`` called positionally that returns the stream alone. The model runs the
temporal blocks only for videos of more than one frame and reshapes between the two kinds, and
modulates ``norm_out`` inline, so it offers one tap, ``output`` (``(B, C, F, H, W)``): a forecast step
skips the whole forward. The pipeline batches cond and uncond in one call and passes the DDIM timestep
0..999 (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["LatteAdapter"]


class LatteAdapter(DiffusersBackbone):
    """``LatteTransformer3DModel``: tap ``output``."""

    model_classes = ("diffusers:LatteTransformer3DModel",)
    body = ("transformer_blocks", "temporal_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "BasicTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps(hidden=False, normed=None)
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "output"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("latte", LatteAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return LatteAdapter.resolve(model)
