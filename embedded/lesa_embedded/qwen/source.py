"""``embedded-qwen``: the project's small trained Qwen-Image-class model as a LESA model source.

Registered through the ``lesa`` entry point ``embedded-qwen`` so ``lesa demo --model embedded-qwen``
(and ``collect``, ``train``, ``sample``, ``evaluate``) run on it offline.  Training prompts are a fixed,
seeded shuffle of the training captions; evaluation prompts the same for the 54 held-out caption
combinations.  Prompt adherence is the analytic per-object scorer of :mod:`lesa_embedded.qwen.adherence`.
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


class EmbeddedQwenModelSource(ShippedPipelineSource):
    """The shipped, trained ``QwenImagePipeline`` (40×40 images, 100 image tokens, true CFG)."""

    description = "the project's small trained Qwen-Image-class text-to-image model (shipped, offline)"

    shuffle_seed = 20260302

    def load_pipeline(self, device: str | torch.device, dtype: torch.dtype) -> Any:
        from lesa_embedded.qwen import load_qwen_pipeline

        return load_qwen_pipeline(device=device, dtype=dtype)

    def shipped_call_defaults(self) -> Mapping[str, Any]:
        from lesa_embedded.qwen import QWEN_CALL_DEFAULTS

        return QWEN_CALL_DEFAULTS

    def default_config(self) -> dict[str, Any]:
        return {
            "model": "embedded-qwen",
            "tap": "normed",  # LESA's Qwen-Image tap (after norm_out, before proj_out)
            "predictor": {
                "name": "kan",
                "taps": [4, 8, 8],
                "time_encoding": "relative",
                "history": "full",
                "per_channel": True,
            },
            "router": {"name": "threshold", "boundaries": [0.9, 0.5]},
            "policy": {"name": "interval", "interval": 7, "warmup": 3},
        }

    def caption_set(self) -> CaptionedCombos[Any]:
        from lesa_embedded.qwen.pairs import CAPTION_SET

        return CAPTION_SET

    def score(self, images: Tensor, prompts: list[str]) -> Tensor:
        """Whether each image shows its caption (all attributes match)."""
        from lesa_embedded.qwen.adherence import score_adherence

        return score_adherence(images, prompts).match.float()


@hookimpl
def lesa_register_models(registry: Registry[type[ModelSource]]) -> None:
    registry.add("embedded-qwen", EmbeddedQwenModelSource)
