"""``sd3``: the adapter for diffusers' ``SD3Transformer2DModel`` (Stable Diffusion 3 / 3.5).

Body: ``transformer_blocks`` (``JointTransformerBlock``, the MMDiT block: keywords, or positionally
``hidden_states, encoder_hidden_states, temb`` under gradient checkpointing; it returns
``(encoder_hidden_states, hidden_states)``, the text stream ``None`` after the last block). The pipeline
passes the raw timestep 0..1000 (``timestep_scale = 0.001``) and **batches guidance**: with
classifier-free guidance one call holds ``[uncond, cond]`` along the batch (``batched_guidance``), which
the runtime reports as two trajectories. Skip-layer guidance (the pipeline's ``skip_guidance_layers``) is
an extra call per step with ``skip_layers`` set: it runs in a cache context of its own
(``extra_call_arguments``). The output is unpatchified after ``proj_out`` (channels first); ``proj_out``
is still the ``normed`` tap's head, token-wise (the unpatchify only rearranges its values). Default tap
``hidden``; on a forecast step the text projection and the patch embedding, which only feed the body,
are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["SD3Adapter"]


class SD3Adapter(DiffusersBackbone):
    """``SD3Transformer2DModel``: taps ``hidden`` (default), ``normed``, ``output``."""

    model_classes = ("diffusers:SD3Transformer2DModel",)
    body = ("transformer_blocks",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "JointTransformerBlock": BlockIO(hidden_out=1, encoder_out=0)
    }
    forecast_skips = ("context_embedder", "pos_embed")
    output_channels_first = True
    taps = standard_taps()
    default_tap = "hidden"
    timestep_scale = 0.001
    batched_guidance = ("uncond", "cond")
    extra_call_arguments: ClassVar[Mapping[str, str]] = {"skip_layers": "skip_guidance_layers"}


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("sd3", SD3Adapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return SD3Adapter.resolve(model)
