"""An example third-party LESA adapter: diffusers' ``WanTransformer3DModel`` (Wan 2.1 / 2.2).

Written only against the public API — :mod:`lesa_core` and the declarative base class
:class:`lesa_adapters.DiffusersBackbone` — and registered through the ``lesa`` entry point declared in
``pyproject.toml``. ``docs/adding-a-backbone.md`` walks through it line by line.

What it declares about Wan:

* the body is ``blocks`` (one stream: ``WanTransformerBlock`` is called positionally as
  ``(hidden_states, encoder_hidden_states, temb, rotary_emb)`` and returns the hidden state alone);
* the head modulates ``norm_out`` inline (no ``AdaLayerNorm`` module), so there is no ``normed`` tap:
  ``hidden`` (after the last block) and ``output`` (the velocity, channel-first ``(B, C, F, H, W)``);
* ``WanPipeline`` passes the raw timestep 0..1000 (``timestep_scale = 0.001``); Wan 2.2 TI2V passes
  one per token with the first frame's set to 0, so :meth:`WanAdapter.step_time` takes the largest;
* on forecast steps the RoPE table (``rope``) only feeds the body and is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from lesa_adapters import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["WanAdapter"]


class WanAdapter(DiffusersBackbone):
    """``WanTransformer3DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:WanTransformer3DModel",)
    body = ("blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {"WanTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None)}
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps(normed=None)
    default_tap = "hidden"
    timestep_scale = 0.001

    def step_time(self, timestep: Any) -> Tensor:
        """Flow time of the call; a per-token timestep (``(B, tokens)``, Wan 2.2 TI2V) gives its maximum."""
        if isinstance(timestep, Tensor) and timestep.ndim == 2:
            timestep = timestep.amax(dim=1)
        return super().step_time(timestep)


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("wan", WanAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return WanAdapter.resolve(model)
