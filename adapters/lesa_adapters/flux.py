"""``flux``: the adapter for diffusers' ``FluxTransformer2DModel`` (FLUX.1-dev / schnell and the
embedded default model).

Body: ``transformer_blocks`` (double-stream) then ``single_transformer_blocks``; both block classes
take ``hidden_states, encoder_hidden_states`` (keyword, or positionally in that order under gradient
checkpointing) and return ``(encoder_hidden_states, hidden_states)``. The pipeline passes t in
[0, 1] (the model multiplies by 1000 inside). Default tap ``hidden`` (LESA's FLUX tap): on a forecast
step the stem still runs (the timestep embedding feeds the ``norm_out`` modulation) except the text
projection and the RoPE table, which only feed the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["FluxAdapter"]

_JOINT = BlockIO(hidden_out=1, encoder_out=0)


class FluxAdapter(DiffusersBackbone):
    """``FluxTransformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:FluxTransformer2DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {"FluxTransformerBlock": _JOINT, "FluxSingleTransformerBlock": _JOINT}
    forecast_skips = ("context_embedder", "pos_embed")
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 1.0


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("flux", FluxAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return FluxAdapter.resolve(model)
