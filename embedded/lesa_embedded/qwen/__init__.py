"""The Qwen-Image-class embedded model: a small trained ``QwenImagePipeline`` shipped in the repo.

A real ``diffusers.QwenImagePipeline`` (``QwenImageTransformer2DModel`` 4 dual-stream blocks, hidden
96; ``AutoencoderKLQwenImage`` 40 px → 4 × 20 × 20 latents → 100 image tokens; a tiny
``Qwen2_5_VLForConditionalGeneration`` text encoder with a byte-level BPE ``Qwen2Tokenizer`` built
offline) trained with rectified flow on procedurally generated two-object images whose captions name
both objects and their relation (:mod:`.pairs`), sampled with true CFG (separate cond / uncond
transformer calls, as the real pipeline does).  See ``docs/embedded-model.md``.

>>> from lesa_embedded.qwen import QWEN_CALL_DEFAULTS, heldout_prompts, load_qwen_pipeline
>>> pipe = load_qwen_pipeline()
>>> images = pipe(heldout_prompts(4), **QWEN_CALL_DEFAULTS, output_type="pt").images

Importing this package imports neither diffusers nor transformers (only :func:`load_qwen_pipeline`
does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lesa_embedded.common.captions import spread
from lesa_embedded.common.loading import load_pipeline_folder

from . import pairs
from .adherence import PairAdherence, detect_object, score_adherence

#: The committed pipeline folder (fp16 safetensors, loads with ``QwenImagePipeline.from_pretrained``).
QWEN_PIPELINE_DIR: Path = Path(__file__).resolve().parent / "pipeline"

#: Keyword arguments of the pipeline call the model is measured with: 40 × 40 pixels, 50 steps, true
#: CFG 4 against the empty negative prompt (two transformer calls per step, in the pipeline's "cond"
#: and "uncond" cache contexts; the model was trained with 10 % empty captions).  ``max_sequence_length``
#: 32 is far above the captions' 9 + 5 tokens (the pipeline's default 512 only bounds a truncation).
QWEN_CALL_DEFAULTS: dict[str, Any] = {
    "height": pairs.IMAGE_SIZE,
    "width": pairs.IMAGE_SIZE,
    "num_inference_steps": 50,
    "max_sequence_length": 32,
    "true_cfg_scale": 4.0,
    "negative_prompt": "",
}

#: Every training caption (486 combinations), in a fixed order.
TRAIN_PROMPTS: tuple[str, ...] = tuple(pairs.train_captions())
#: Every held-out caption (54 combinations never seen in training), in a fixed order.
HELDOUT_PROMPTS: tuple[str, ...] = tuple(pairs.heldout_captions())


def train_prompts(n: int | None = None) -> list[str]:
    """``n`` training captions spread evenly over the training set (all if ``n`` is None)."""
    return spread(TRAIN_PROMPTS, n)


def heldout_prompts(n: int | None = None) -> list[str]:
    """``n`` held-out captions spread evenly over the held-out set (all 54 if ``n`` is None)."""
    return spread(HELDOUT_PROMPTS, n)


def load_qwen_pipeline(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress_bar: bool = False,
) -> Any:
    """Load the shipped pipeline offline (``local_files_only``), every component in ``eval()`` mode."""
    return load_pipeline_folder("QwenImagePipeline", QWEN_PIPELINE_DIR, device=device, dtype=dtype, progress_bar=progress_bar)


def adherence_scores(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Per-image prompt adherence as floats in {0, 1} (1: both objects and the relation match)."""
    return score_adherence(images, prompts).match.float()


__all__ = [
    "HELDOUT_PROMPTS",
    "QWEN_CALL_DEFAULTS",
    "QWEN_PIPELINE_DIR",
    "TRAIN_PROMPTS",
    "PairAdherence",
    "adherence_scores",
    "detect_object",
    "heldout_prompts",
    "load_qwen_pipeline",
    "pairs",
    "score_adherence",
    "train_prompts",
]
