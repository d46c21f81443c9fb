"""``flux2``: the adapter for diffusers' ``Flux2Transformer2DModel`` (FLUX.2 [dev] and [klein]).

Body: ``transformer_blocks`` (double-stream: keyword calls, return ``(encoder_hidden_states,
hidden_states)``) then ``single_transformer_blocks`` (the model concatenates text and image tokens and
passes ``encoder_hidden_states=None``, so each returns the joint sequence alone). The head is
``norm_out`` (``AdaLayerNormContinuous``) on the image tokens then ``proj_out`` (token layout); the model
returns a ``Flux2Transformer2DModelOutput``, which :meth:`Flux2Adapter.wrap_output` rebuilds. FLUX.2
[dev] is guidance-distilled (the scale is an input embedding: one call per step); FLUX.2 [klein] runs
true CFG in the cache contexts ``"cond"``/``"uncond"``. The pipelines pass t in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["Flux2Adapter"]


class Flux2Adapter(DiffusersBackbone):
    """``Flux2Transformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:Flux2Transformer2DModel",)
    body = ("transformer_blocks", "single_transformer_blocks")
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "Flux2TransformerBlock": BlockIO(hidden_out=1, encoder_out=0),
        "Flux2SingleTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 1.0

    def wrap_output(self, sample: Tensor, return_dict: bool) -> Any:
        """The model's return value for ``sample``: ``Flux2Transformer2DModelOutput`` or a 1-tuple."""
        if not return_dict:
            return (sample,)
        from diffusers.models.transformers.transformer_flux2 import Flux2Transformer2DModelOutput

        return Flux2Transformer2DModelOutput(sample=sample)


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("flux2", Flux2Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return Flux2Adapter.resolve(model)
