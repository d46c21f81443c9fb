"""``embedded-video``: the project's small trained HunyuanVideo-class model as a LESA model source.

Registered through the ``lesa`` entry point ``embedded-video`` so ``lesa demo --model embedded-video``
(and ``collect``, ``train``, ``sample``, ``evaluate``) run on it offline.  Training prompts are a fixed,
seeded shuffle of the training captions; evaluation prompts the same for the 16 held-out caption
combinations.  Prompt adherence is the analytic per-frame and motion scorer of
:mod:`lesa_embedded.video.adherence`; the pipeline returns videos (``.frames``, ``(B, F, 3, H, W)``).
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


class EmbeddedVideoModelSource(ShippedPipelineSource):
    """The shipped, trained ``HunyuanVideoPipeline`` (9 frames of 32×32, 48 video tokens, true CFG)."""

    description = "the project's small trained HunyuanVideo-class text-to-video model (shipped, offline)"

    shuffle_seed = 20260303

    def load_pipeline(self, device: str | torch.device, dtype: torch.dtype) -> Any:
        from lesa_embedded.video import load_video_pipeline

        return load_video_pipeline(device=device, dtype=dtype)

    def shipped_call_defaults(self) -> Mapping[str, Any]:
        from lesa_embedded.video import VIDEO_CALL_DEFAULTS

        return VIDEO_CALL_DEFAULTS

    def default_config(self) -> dict[str, Any]:
        return {
            "model": "embedded-video",
            "tap": "output",  # LESA's HunyuanVideo tap: the transformer's output (the velocity)
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
        from lesa_embedded.video.motions import CAPTION_SET

        return CAPTION_SET

    def score_adherence(self, images: Tensor, prompts: list[str]) -> Tensor | None:
        """``None`` unless ``images`` are videos ``(B, F, 3, H, W)`` and every prompt a canonical caption."""
        if images.dim() != 5:
            return None
        return super().score_adherence(images, prompts)

    def score(self, images: Tensor, prompts: list[str]) -> Tensor:
        """Whether each video shows its caption (colour, shape and motion all match)."""
        from lesa_embedded.video.adherence import score_adherence

        return score_adherence(images, prompts).match.float()


@hookimpl
def lesa_register_models(registry: Registry[type[ModelSource]]) -> None:
    registry.add("embedded-video", EmbeddedVideoModelSource)
