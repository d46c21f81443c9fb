"""``qwen_image``: the adapter for diffusers' ``QwenImageTransformer2DModel``.

Body: ``transformer_blocks`` only; the block takes ``hidden_states, encoder_hidden_states`` and
returns ``(encoder_hidden_states, hidden_states)``. The pipeline passes t in [0, 1]. Default tap
``normed`` (LESA's Qwen-Image tap: after ``norm_out``, before ``proj_out``); the pipeline runs cond
and uncond in the cache contexts ``"cond"``/``"uncond"``, which keep separate histories.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["QwenImageAdapter"]


class QwenImageAdapter(DiffusersBackbone):
    """``QwenImageTransformer2DModel``: taps ``hidden``, ``normed`` (default), ``output``."""

    model_classes = ("diffusers:QwenImageTransformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {"QwenImageTransformerBlock": BlockIO(hidden_out=1, encoder_out=0)}
    forecast_skips = ("pos_embed",)
    taps = standard_taps()
    default_tap = "normed"
    timestep_scale = 1.0


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("qwen_image", QwenImageAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return QwenImageAdapter.resolve(model)
