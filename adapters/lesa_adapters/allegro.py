"""``allegro``: the adapter for diffusers' ``AllegroTransformer3DModel`` (Allegro).

Body: ``transformer_blocks``; ``AllegroTransformerBlock`` takes ``hidden_states`` (keyword, or first
positionally) and returns it alone. The head modulates ``norm_out`` inline with ``scale_shift_table``,
so there is no ``normed`` tap: ``hidden`` (default) and ``output`` (``(B, C, F, H, W)``). The pipeline
batches cond and uncond in one call and passes the scheduler's timestep 0..999
(``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["AllegroAdapter"]


class AllegroAdapter(DiffusersBackbone):
    """``AllegroTransformer3DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:AllegroTransformer3DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "AllegroTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps(normed=None)
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("allegro", AllegroAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return AllegroAdapter.resolve(model)
