"""The HunyuanVideo-class embedded model: a small trained ``HunyuanVideoPipeline`` shipped in the repo.

A real ``diffusers.HunyuanVideoPipeline`` (``HunyuanVideoTransformer3DModel`` 2 dual-stream + 4
single-stream blocks, hidden 96; ``AutoencoderKLHunyuanVideo`` 9 frames of 32 × 32 → 3 × 8 × 8
latents → 48 video tokens; a tiny ``LlamaModel`` with a byte-level BPE tokenizer built offline and a
tiny ``CLIPTextModel``) trained with rectified flow on procedural captioned videos of one shape that
moves, grows, shrinks, turns or changes colour as its caption says (:mod:`.motions`), sampled with
true CFG (separate cond / uncond transformer calls, the pipeline's ``true_cfg_scale``).
See ``docs/embedded-model.md``.

>>> from lesa_embedded.video import VIDEO_CALL_DEFAULTS, heldout_prompts, load_video_pipeline
>>> pipe = load_video_pipeline()
>>> frames = pipe(heldout_prompts(4), **VIDEO_CALL_DEFAULTS, output_type="pt").frames  # (4, 9, 3, 32, 32)

Importing this package imports neither diffusers nor transformers (only :func:`load_video_pipeline`
does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lesa_embedded.common.captions import spread
from lesa_embedded.common.loading import load_pipeline_folder

from . import motions
from .adherence import VideoAdherence, score_adherence

#: The committed pipeline folder (fp16 safetensors, loads with ``HunyuanVideoPipeline.from_pretrained``).
VIDEO_PIPELINE_DIR: Path = Path(__file__).resolve().parent / "pipeline"

#: The Llama prompt template of the real pipeline, with the crop that fits the shipped tokenizer: its
#: 95 template-prefix tokens (``<|begin_of_text|>`` included) are exactly the real tokenizer's count;
#: ``tools/embedded/video/build.py`` checks it against every caption.
PROMPT_TEMPLATE: dict[str, Any] = {
    "template": (
        "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
        "1. The main content and theme of the video."
        "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
        "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
        "4. background environment, light, style and atmosphere."
        "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    ),
    "crop_start": 95,
}

#: Keyword arguments of the pipeline call the model is measured with: 9 frames of 32 × 32, 50 steps,
#: true CFG 1.5 against the empty negative prompt (two transformer calls per step, in the pipeline's
#: "cond" and "uncond" cache contexts; the model was trained with 10 % empty captions; the transformer
#: has no guidance embedding, so the pipeline's embedded ``guidance_scale`` is unused), 16 caption
#: tokens after the template (captions are at most 6). The scale was chosen on *training* captions: on 32,
#: adherence 94 % at 1.5 and 2, 81 % at 3, 75 % at 4, 47 % at 8 (strong guidance stalls the motion); on
#: all 144, 90.3 % at 1.5 against 86.8 % at 2.
VIDEO_CALL_DEFAULTS: dict[str, Any] = {
    "height": motions.FRAME_SIZE,
    "width": motions.FRAME_SIZE,
    "num_frames": motions.NUM_FRAMES,
    "num_inference_steps": 50,
    "true_cfg_scale": 1.5,
    "negative_prompt": "",
    "prompt_template": PROMPT_TEMPLATE,
    "max_sequence_length": 16,
}

#: Every training caption (144 combinations), in a fixed order.
TRAIN_PROMPTS: tuple[str, ...] = tuple(motions.train_captions())
#: Every held-out caption (16 combinations never seen in training), in a fixed order.
HELDOUT_PROMPTS: tuple[str, ...] = tuple(motions.heldout_captions())


def train_prompts(n: int | None = None) -> list[str]:
    """``n`` training captions spread evenly over the training set (all if ``n`` is None)."""
    return spread(TRAIN_PROMPTS, n)


def heldout_prompts(n: int | None = None) -> list[str]:
    """``n`` held-out captions spread evenly over the held-out set (all 16 if ``n`` is None)."""
    return spread(HELDOUT_PROMPTS, n)


def load_video_pipeline(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress_bar: bool = False,
) -> Any:
    """Load the shipped pipeline offline (``local_files_only``), every component in ``eval()`` mode."""
    return load_pipeline_folder("HunyuanVideoPipeline", VIDEO_PIPELINE_DIR, device, dtype, progress_bar)


def adherence_scores(videos: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Per-video prompt adherence as floats in {0, 1} (1: colour, shape and motion all match)."""
    return score_adherence(videos, prompts).match.float()


__all__ = [
    "HELDOUT_PROMPTS",
    "PROMPT_TEMPLATE",
    "TRAIN_PROMPTS",
    "VIDEO_CALL_DEFAULTS",
    "VIDEO_PIPELINE_DIR",
    "VideoAdherence",
    "adherence_scores",
    "heldout_prompts",
    "load_video_pipeline",
    "motions",
    "score_adherence",
    "train_prompts",
]
