"""``embedded``: the project's small trained FLUX-class model as a LESA model source.

Registered through the ``lesa`` entry point ``embedded`` so the workflow commands (``lesa demo``,
``collect``, ``train``, ``sample``) run on it by default, offline. Training prompts are a fixed,
seeded shuffle of the generator's training captions; evaluation prompts the same for the held-out
caption combinations (never seen in training). Prompt adherence is the analytic detector of
:mod:`lesa_embedded.flux.adherence`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lesa_core import hookimpl
from lesa_core.interfaces.model import ModelSource
from lesa_core.registry import Registry
from lesa_embedded.common.captions import CaptionedCombos
from lesa_embedded.common.source import ShippedPipelineSource


class EmbeddedModelSource(ShippedPipelineSource):
    """The shipped, trained ``FluxPipeline`` (64×64 images, 256 image tokens)."""

    description = "the project's small trained FLUX-class text-to-image model (shipped, offline)"

    shuffle_seed = 20260226

    def load_pipeline(self, device: str | torch.device, dtype: torch.dtype) -> Any:
        from lesa_embedded.flux import load_embedded_pipeline

        return load_embedded_pipeline(device=device, dtype=dtype)

    def shipped_call_defaults(self) -> Mapping[str, Any]:
        from lesa_embedded.flux import EMBEDDED_CALL_DEFAULTS

        return EMBEDDED_CALL_DEFAULTS

    def default_config(self) -> dict[str, Any]:
        return {
            "model": "embedded",
            # tap `normed` (after the output norm, before proj_out), `full` history: the best of
            # `lesa bench --quality --compare-taps hidden,output` on this model (docs/results.md)
            "tap": "normed",
            "predictor": {"name": "kan", "taps": [4, 8, 8], "time_encoding": "relative", "history": "full",
                          "per_channel": True},
            "router": {"name": "threshold", "boundaries": [0.9, 0.5]},
            "policy": {"name": "interval", "interval": 7, "warmup": 3},
        }

    def caption_set(self) -> CaptionedCombos[Any]:
        from lesa_embedded.flux.shapes import CAPTION_SET

        return CAPTION_SET

    def score(self, images: Tensor, prompts: list[str]) -> Tensor:
        """Whether each image shows its caption (all attributes match)."""
        from lesa_embedded.flux.adherence import score_adherence

        return score_adherence(images, prompts).match.float()


@hookimpl
def lesa_register_models(registry: Registry[type[ModelSource]]) -> None:
    registry.add("embedded", EmbeddedModelSource, default=True)
