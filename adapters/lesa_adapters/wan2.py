"""``wan2``: the built-in adapter for diffusers' ``WanTransformer3DModel`` (Wan 2.1 / 2.2 T2V, I2V, TI2V).

The same declarations as the external example ``docs/examples/lesa-example-wan`` (which
``docs/adding-a-backbone.md`` builds line by line), shipped in ``lesa-adapters`` under the name
``wan2``. The example registers ``wan``; when it is installed it claims Wan models first, because this
built-in resolves last (``trylast``): an installed third-party adapter for a class always overrides
the built-in one.

Body: ``blocks``; ``WanTransformerBlock`` is called positionally ``(hidden_states,
encoder_hidden_states, temb, rotary_emb)`` and returns the hidden state alone. The head modulates
``norm_out`` inline, so the taps are ``hidden`` (default) and ``output`` (``(B, C, F, H, W)``). The
pipelines run cond and uncond in the cache contexts ``"cond"``/``"uncond"`` and pass 0..1000
(``timestep_scale = 0.001``); Wan 2.2 TI2V passes one timestep per token, of which the largest is the
step's. On forecast steps the RoPE table (``rope``) is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["Wan2Adapter"]


class Wan2Adapter(DiffusersBackbone):
    """``WanTransformer3DModel``: taps ``hidden`` (default) and ``output``."""

    model_classes = ("diffusers:WanTransformer3DModel",)
    body = ("blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "WanTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
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
    registry.add("wan2", Wan2Adapter)


@hookimpl(trylast=True)
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return Wan2Adapter.resolve(model)
