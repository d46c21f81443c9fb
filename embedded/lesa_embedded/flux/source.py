"""``embedded``: the project's small trained FLUX-class model as a LESA model source.

Registered through the ``lesa`` entry point ``embedded`` so the workflow commands (``lesa demo``,
``collect``, ``train``, ``sample``) run on it by default, offline. Training prompts are a fixed,
seeded shuffle of the generator's training captions; evaluation prompts the same for the held-out
caption combinations (never seen in training). Prompt adherence is the analytic detector of
:mod:`lesa_embedded.flux.adherence`.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor

from lesa_core import hookimpl
from lesa_core.interfaces.model import ModelSource
from lesa_core.registry import Registry

_SHUFFLE_SEED = 20260226


def _shuffled(captions: list[str]) -> list[str]:
    captions = list(captions)
    random.Random(_SHUFFLE_SEED).shuffle(captions)
    return captions


class EmbeddedModelSource(ModelSource):
    """The shipped, trained ``FluxPipeline`` (64×64 images, 256 image tokens)."""

    description = "the project's small trained FLUX-class text-to-image model (shipped, offline)"

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        from lesa_embedded.flux import load_embedded_pipeline

        return load_embedded_pipeline(device=device, dtype=dtype)

    def call_defaults(self) -> dict[str, Any]:
        from lesa_embedded.flux import EMBEDDED_CALL_DEFAULTS

        return {k: v for k, v in EMBEDDED_CALL_DEFAULTS.items() if k != "num_inference_steps"}

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

    def train_prompts(self) -> list[str]:
        from lesa_embedded.flux.shapes import train_captions

        return _shuffled(train_captions())

    def eval_prompts(self) -> list[str]:
        from lesa_embedded.flux.shapes import heldout_captions

        return _shuffled(heldout_captions())

    def score_adherence(self, images: Tensor, prompts: list[str]) -> Tensor | None:
        """Whether each image shows its caption; ``None`` when a prompt is not a caption of the shapes data
        set (``lesa sample --prompt "anything"``): the analytic scorer reads only those."""
        from lesa_embedded.flux.adherence import score_adherence
        from lesa_embedded.flux.shapes import parse_caption

        try:
            for prompt in prompts:
                parse_caption(prompt)
        except ValueError:
            return None
        return score_adherence(images, prompts).match.float()


@hookimpl
def lesa_register_models(registry: Registry[type[ModelSource]]) -> None:
    registry.add("embedded", EmbeddedModelSource, default=True)
