"""``embedded-qwen``: the project's small trained Qwen-Image-class model as a LESA model source.

Registered through the ``lesa`` entry point ``embedded-qwen`` so ``lesa demo --model embedded-qwen``
(and ``collect``, ``train``, ``sample``, ``evaluate``) run on it offline.  Training prompts are a fixed,
seeded shuffle of the training captions; evaluation prompts the same for the 54 held-out caption
combinations.  Prompt adherence is the analytic per-object scorer of :mod:`lesa_embedded.qwen.adherence`.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor

from lesa_core import hookimpl
from lesa_core.interfaces.model import ModelSource
from lesa_core.registry import Registry

_SHUFFLE_SEED = 20260302


def _shuffled(captions: list[str]) -> list[str]:
    captions = list(captions)
    random.Random(_SHUFFLE_SEED).shuffle(captions)
    return captions


class EmbeddedQwenModelSource(ModelSource):
    """The shipped, trained ``QwenImagePipeline`` (40×40 images, 100 image tokens, true CFG)."""

    description = "the project's small trained Qwen-Image-class text-to-image model (shipped, offline)"

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        from lesa_embedded.qwen import load_qwen_pipeline

        return load_qwen_pipeline(device=device, dtype=dtype)

    def call_defaults(self) -> dict[str, Any]:
        from lesa_embedded.qwen import QWEN_CALL_DEFAULTS

        return {k: v for k, v in QWEN_CALL_DEFAULTS.items() if k != "num_inference_steps"}

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

    def train_prompts(self) -> list[str]:
        from lesa_embedded.qwen.pairs import train_captions

        return _shuffled(train_captions())

    def eval_prompts(self) -> list[str]:
        from lesa_embedded.qwen.pairs import heldout_captions

        return _shuffled(heldout_captions())

    def score_adherence(self, images: Tensor, prompts: list[str]) -> Tensor | None:
        """Whether each image shows its caption; ``None`` when a prompt is not a two-object caption."""
        from lesa_embedded.qwen.adherence import score_adherence
        from lesa_embedded.qwen.pairs import parse_caption

        try:
            for prompt in prompts:
                parse_caption(prompt)
        except ValueError:
            return None
        return score_adherence(images, prompts).match.float()


@hookimpl
def lesa_register_models(registry: Registry[type[ModelSource]]) -> None:
    registry.add("embedded-qwen", EmbeddedQwenModelSource)
