"""``skyreels_v2``: the adapter for diffusers' ``SkyReelsV2Transformer3DModel`` (SkyReels-V2 T2V/I2V and
diffusion forcing).

A Wan-style body: ``blocks``; ``SkyReelsV2TransformerBlock`` is called positionally ``(hidden_states,
encoder_hidden_states, temb, rotary_emb, attention_mask)`` and returns the hidden state alone. The head
modulates ``norm_out`` inline: taps ``hidden`` (default) and ``output`` (``(B, C, F, H, W)``). The
pipelines run cond and uncond in the cache contexts ``"cond"``/``"uncond"`` and pass 0..1000
(``timestep_scale = 0.001``); diffusion forcing passes one timestep per frame block, of which the
largest is taken. On forecast steps the RoPE table (``rope``) is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["SkyReelsV2Adapter"]


class SkyReelsV2Adapter(DiffusersBackbone):
    """``SkyReelsV2Transformer3DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:SkyReelsV2Transformer3DModel",)
    body = ("blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "SkyReelsV2TransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    forecast_skips = ("rope",)
    output_channels_first = True
    taps = standard_taps(normed=None)
    default_tap = "hidden"
    timestep_scale = 0.001

    def step_time(self, timestep: Any) -> Tensor:
        """Flow time of the call; a per-token timestep (``(B, tokens)``, diffusion forcing) gives its maximum."""
        if isinstance(timestep, Tensor) and timestep.ndim == 2:
            timestep = timestep.amax(dim=1)
        return super().step_time(timestep)


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("skyreels_v2", SkyReelsV2Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return SkyReelsV2Adapter.resolve(model)
