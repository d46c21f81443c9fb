"""``hunyuan_video``: the adapter for diffusers' ``HunyuanVideoTransformer3DModel``.

Body: ``transformer_blocks`` then ``single_transformer_blocks`` (the I2V token-replace variants
included); the blocks are called **positionally** ``(hidden_states, encoder_hidden_states, temb, ...)``
and return ``(hidden_states, encoder_hidden_states)``. The pipeline passes the raw timestep 0..1000
(``timestep_scale = 0.001``). Default tap ``output`` (LESA's HunyuanVideo tap: the velocity), which
skips the whole forward on forecast steps; with the ``hidden``/``normed`` taps the token refiner
(``context_embedder``) and the RoPE table, which only feed the body, are skipped too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["HunyuanVideoAdapter"]

_BLOCK = BlockIO(hidden_out=0, encoder_out=1)


class HunyuanVideoAdapter(DiffusersBackbone):
    """``HunyuanVideoTransformer3DModel``: taps ``hidden``, ``normed``, ``output`` (default)."""

    model_classes = ("diffusers:HunyuanVideoTransformer3DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "HunyuanVideoTransformerBlock": _BLOCK,
        "HunyuanVideoSingleTransformerBlock": _BLOCK,
        "HunyuanVideoTokenReplaceTransformerBlock": _BLOCK,
        "HunyuanVideoTokenReplaceSingleTransformerBlock": _BLOCK,
    }
    forecast_skips = ("context_embedder", "rope")
    output_channels_first = True
    taps = standard_taps()
    default_tap = "output"
    timestep_scale = 0.001


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("hunyuan_video", HunyuanVideoAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return HunyuanVideoAdapter.resolve(model)
