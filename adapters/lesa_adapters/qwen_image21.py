"""``qwen_image21``: the adapter for diffusers' ``QwenImage21Transformer2DModel`` (Qwen-Image 2.1).

Body: ``transformer_blocks``, single-stream blocks over the joint text and image sequence;
``QwenImage21TransformerBlock`` takes ``hidden_states`` (keyword) and returns it alone. The head is
``norm_out`` (``QwenImage21AdaLayerNormContinuous``) then ``proj_out`` over the joint sequence (token
layout; the pipeline keeps the target image's tokens). The pipeline runs true CFG as separate calls in
the cache contexts ``"cond"`` / ``"uncond"`` and passes t in [0, 1] (``timestep_scale = 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["QwenImage21Adapter"]


class QwenImage21Adapter(DiffusersBackbone):
    """``QwenImage21Transformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:QwenImage21Transformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "QwenImage21TransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 1.0


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("qwen_image21", QwenImage21Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return QwenImage21Adapter.resolve(model)
