"""``z_image``: the adapter for diffusers' ``ZImageTransformer2DModel`` (Z-Image, Z-Image-Turbo).

The forward takes lists: ``x`` (one latent per sample) and ``cap_feats``, and returns a list of
outputs. Body: ``layers`` (the joint blocks over the padded image and caption sequence; the
``noise_refiner`` and ``context_refiner`` blocks are stem); ``ZImageTransformerBlock`` is called
positionally ``(x, attn_mask, freqs_cis, adaln_input)`` and returns the stream alone. The head
(``all_final_layer``) is followed by a per-sample unpatchify into the output list, so the one tap is
``hidden``. :meth:`ZImageAdapter.latent_tensor` stacks the latent list (its shape and device identify
the trajectory). The pipeline batches cond and uncond as list entries of one call (cond first) and
passes ``t = (1000 - timestep) / 1000``, rising from 0 at pure noise, so flow time is ``1 - t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from lesa_adapters.engine.declarations import BlockIO, DiffusersBackbone, standard_taps
from lesa_core import hookimpl
from lesa_core.registry import Registry

__all__ = ["ZImageAdapter"]


class ZImageAdapter(DiffusersBackbone):
    """``ZImageTransformer2DModel``: tap ``hidden``."""

    model_classes = ("diffusers:ZImageTransformer2DModel",)
    body = ("layers",)
    block_io: ClassVar[Mapping[str, BlockIO]] = {
        "ZImageTransformerBlock": BlockIO(hidden_out=None, encoder_arg=None, encoder_pos=None),
    }
    taps = standard_taps(normed=None, output=False)
    batched_guidance = ("cond", "uncond")  # the latent list of a guided call, in order
    default_tap = "hidden"
    timestep_scale = 1.0
    latent_argument = "x"
    timestep_argument = "t"

    def hidden_size(self) -> int:
        """``config.dim``."""
        config: Any = getattr(self.model, "config", None)
        return int(config.dim)

    def latent_tensor(self, latent: Any) -> Any:
        """The per-sample latents ``x`` stacked along a batch dimension (equal shapes; else returned
        as given, which the runtime refuses with a clear error)."""
        tensors = isinstance(latent, (list, tuple)) and latent and all(isinstance(x, Tensor) for x in latent)
        if tensors and len({tuple(x.shape) for x in latent}) == 1:
            return torch.stack(list(latent))
        return latent

    def time_from_timestep(self, timestep: Tensor) -> Tensor:
        """Flow time ``1 - t`` (the pipeline passes 0 at pure noise)."""
        return 1.0 - timestep.float()

    def timestep_from_time(self, t: Tensor) -> Tensor:
        """The pipeline's ``t`` for flow time ``t``: ``1 - t``."""
        return 1.0 - t


@hookimpl
def lesa_register_adapters(registry: Registry[type[DiffusersBackbone]]) -> None:
    registry.add("z_image", ZImageAdapter)


@hookimpl
def lesa_resolve_adapter(model: Any) -> type[DiffusersBackbone] | None:
    return ZImageAdapter.resolve(model)
