"""``hidream``: the adapter for diffusers' ``HiDreamImageTransformer2DModel`` (HiDream-I1 Full/Dev/Fast).

Body: ``double_stream_blocks`` then ``single_stream_blocks``. Every block is a ``HiDreamBlock`` wrapping
the real one in ``.block``, so :meth:`HiDreamAdapter.io_for` looks up the wrapped class: the
double-stream block takes ``hidden_states, encoder_hidden_states`` (keywords) and returns
``(hidden_states, encoder_hidden_states)``; the single-stream block gets the concatenated sequence and
returns it alone. The head (``final_layer``: norm, modulation and projection in one module) is followed
by an unpatchify, so the taps are ``hidden`` (default) and ``output`` (``(B, C, H, W)``). The pipeline
batches cond and uncond in one call and passes 0..1000 as ``timesteps`` (``timestep_scale = 0.001``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["HiDreamAdapter"]


class HiDreamAdapter(DiffusersBackbone):
    """``HiDreamImageTransformer2DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:HiDreamImageTransformer2DModel",)
    body = ("double_stream_blocks", "single_stream_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "HiDreamImageTransformerBlock": BlockIO(hidden_out=0, encoder_out=1),
        "HiDreamImageSingleTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    output_channels_first = True
    taps = standard_taps(normed=None)
    batched_guidance = ("uncond", "cond")  # the rows of a guided call, in batch order
    default_tap = "hidden"
    timestep_scale = 0.001
    timestep_argument = "timesteps"

    def io_for(self, block: nn.Module) -> BlockIO:
        """The :class:`BlockIO` of the block a ``HiDreamBlock`` wraps (``block.block``)."""
        inner = getattr(block, "block", None)
        return super().io_for(inner if isinstance(inner, nn.Module) else block)


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("hidream", HiDreamAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return HiDreamAdapter.resolve(model)
