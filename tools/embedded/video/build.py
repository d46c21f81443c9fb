"""Build the HunyuanVideo-class model's untrained skeleton, and assemble the trained pipeline folder.

The skeleton is a ``HunyuanVideoPipeline`` folder with configs, scheduler and tokenizers but **no
weights**; ``train.py`` builds every network from its config with a fixed seed and trains it;
:func:`assemble` puts configs, tokenizers and trained weights together into the shipped folder (fp16).

Components (all real diffusers / transformers classes):

* ``HunyuanVideoTransformer3DModel``: 2 dual-stream + 4 single-stream blocks, hidden 96 (3 heads of
  32), one token-refiner block, patch 1 × 2 × 2 (48 video tokens), no guidance embedding (true CFG instead).
* ``AutoencoderKLHunyuanVideo``: 3 causal-conv down blocks (16, 32, 32 channels), spatial
  compression 4 and temporal 4: 9 frames of 32 × 32 → 3 × 8 × 8 latents of 8 channels.
* ``LlamaModel`` (4 layers, hidden 64; the pipeline reads the third-last hidden state) with a
  byte-level BPE tokenizer trained here with ``tokenizers`` on the prompt template, the captions and a
  short list of common English words (Llama-3's special tokens, ``<|begin_of_text|>`` prepended).
  The pipeline crops the template prefix by a fixed token count (``crop_start``: 95 for the real Llama
  tokenizer); :func:`prompt_template` gives this tokenizer's count, which the call defaults pass.
* ``CLIPTextModel`` (hidden 32, pooled output) with the FLUX-class model's ``CLIPTokenizer`` (OpenAI
  CLIP's BPE, copied from ``lesa_embedded/flux/pipeline/tokenizer``).
* ``FlowMatchEulerDiscreteScheduler``, static shift 5 (real HunyuanVideo: 7).

Usage::

    python -m tools.embedded.video.build skeleton --out /tmp/video-skeleton
    python -m tools.embedded.video.build assemble --skeleton /tmp/video-skeleton \\
        --weights /tmp/video-weights --out embedded/lesa_embedded/video/pipeline
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.video.motions import ALL_COMBOS

from ..common.bpe import train_byte_bpe, word_corpus
from ..common.folder import build_cli, save_pipeline_folder, write_skeleton_folder
from ..common.weights import load_networks
from ..common.words import COMMON_WORDS

# ------------------------------------------------------------------ architecture

LATENT_CHANNELS = 8
TEXT_HIDDEN = 64
CLIP_HIDDEN = 32
MAX_SEQUENCE_LENGTH = 16  # caption tokens kept after the template (captions are ≤ 7 tokens)

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=LATENT_CHANNELS,
    down_block_types=("HunyuanVideoDownBlock3D",) * 3,
    up_block_types=("HunyuanVideoUpBlock3D",) * 3,
    block_out_channels=(16, 32, 32),
    layers_per_block=1,
    norm_num_groups=8,
    scaling_factor=1.0,  # set from latent statistics after the VAE is trained
    spatial_compression_ratio=4,
    temporal_compression_ratio=4,
    mid_block_add_attention=False,
)

TRANSFORMER_CONFIG: dict[str, Any] = dict(
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    num_attention_heads=3,
    attention_head_dim=32,  # hidden 96
    num_layers=2,
    num_single_layers=4,
    num_refiner_layers=1,
    mlp_ratio=4.0,
    patch_size=2,
    patch_size_t=1,
    guidance_embeds=False,
    text_embed_dim=TEXT_HIDDEN,
    pooled_projection_dim=CLIP_HIDDEN,
    rope_axes_dim=(8, 12, 12),
)

LLAMA_CONFIG: dict[str, Any] = dict(
    hidden_size=TEXT_HIDDEN,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)

CLIP_CONFIG: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=CLIP_HIDDEN,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=77,  # the pipeline pads CLIP prompts to 77 tokens
    projection_dim=CLIP_HIDDEN,
    hidden_act="quick_gelu",
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

SCHEDULER_CONFIG: dict[str, Any] = dict(num_train_timesteps=1000, shift=5.0, use_dynamic_shifting=False)

#: The real pipeline's Llama prompt template text (``DEFAULT_PROMPT_TEMPLATE["template"]``).
TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
VIDEO_WORDS = ["video", "moving", "turning", "growing", "shrinking", "left", "right", "up", "down", "circle",
               "square", "triangle", "red", "green", "blue", "yellow", "white"]  # fmt: skip

FLUX_CLIP_TOKENIZER = Path(__file__).resolve().parents[3] / "embedded/lesa_embedded/flux/pipeline/tokenizer"


def build_llama_tokenizer():
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Llama-3's special tokens (BOS prepended)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    corpus = [TEMPLATE.format(c.caption) for c in ALL_COMBOS] + word_corpus(COMMON_WORDS + VIDEO_WORDS)
    tok = train_byte_bpe(corpus, SPECIAL_TOKENS)
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        model_max_length=256,
        padding_side="right",
    )


def crop_start(tokenizer) -> int:
    """The template prefix's token count (BOS included), checked to be a prefix of every caption's ids."""
    prefix = TEMPLATE.split("{}")[0]
    ids = tokenizer(prefix).input_ids
    for c in ALL_COMBOS:
        full = tokenizer(TEMPLATE.format(c.caption)).input_ids
        if full[: len(ids)] != ids:
            raise RuntimeError(f"template prefix does not tokenize as a prefix of {c.caption!r}")
    return len(ids)


def prompt_template(tokenizer) -> dict[str, Any]:
    """The ``prompt_template`` pipeline argument for ``tokenizer``: the real template, its exact crop."""
    return {"template": TEMPLATE, "crop_start": crop_start(tokenizer)}


def build_clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(FLUX_CLIP_TOKENIZER, model_max_length=77)


# ------------------------------------------------------------------ components


def build_components(tokenizer=None, tokenizer_2=None, seed: int = 0) -> dict[str, Any]:
    """All pipeline components, networks randomly initialised from ``seed``, in ``eval()`` mode."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer = tokenizer if tokenizer is not None else build_llama_tokenizer()
    tokenizer_2 = tokenizer_2 if tokenizer_2 is not None else build_clip_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo(**VAE_CONFIG)
    torch.manual_seed(seed + 1)
    transformer = HunyuanVideoTransformer3DModel(**TRANSFORMER_CONFIG)
    torch.manual_seed(seed + 2)
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **LLAMA_CONFIG,
        )
    )
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG))
    return dict(
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tokenizer_2,
    )


def make_pipeline(components: dict[str, Any]):
    from diffusers import HunyuanVideoPipeline

    return HunyuanVideoPipeline(**components)


def write_skeleton(out: str | os.PathLike) -> Path:
    """Write the skeleton: model_index.json, configs, scheduler, tokenizers; no weight files."""
    return write_skeleton_folder(make_pipeline(build_components(seed=0)), out)


def load_skeleton(skeleton: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """Components built from a skeleton folder's configs and tokenizers, initialised from ``seed``."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import (
        AutoTokenizer,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        LlamaConfig,
        LlamaModel,
    )

    sk = Path(skeleton)
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo.from_config(AutoencoderKLHunyuanVideo.load_config(sk / "vae"))
    torch.manual_seed(seed + 1)
    transformer = HunyuanVideoTransformer3DModel.from_config(
        HunyuanVideoTransformer3DModel.load_config(sk / "transformer")
    )
    torch.manual_seed(seed + 2)
    text_encoder = LlamaModel(LlamaConfig.from_pretrained(sk / "text_encoder"))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModel(CLIPTextConfig.from_pretrained(sk / "text_encoder_2"))
    return dict(
        text_encoder=text_encoder.float().eval(),
        tokenizer=AutoTokenizer.from_pretrained(sk / "tokenizer"),
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(sk / "scheduler"),
        text_encoder_2=text_encoder_2.float().eval(),
        tokenizer_2=CLIPTokenizer.from_pretrained(sk / "tokenizer_2"),
    )


NETWORKS = ("vae", "transformer", "text_encoder", "text_encoder_2")


def assemble(
    skeleton: str | os.PathLike,
    weights: str | os.PathLike,
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Skeleton + trained weights (``<weights>/<component>.safetensors``, ``meta.json``) → pipeline."""
    weights = Path(weights)
    comps = load_skeleton(skeleton)
    meta = json.loads((weights / "meta.json").read_text())
    comps["vae"].register_to_config(scaling_factor=meta["scaling_factor"])
    load_networks(comps, weights, NETWORKS)
    return save_pipeline_folder(make_pipeline(comps), out, ("text_encoder", "text_encoder_2"), dtype)


def main(argv: list[str] | None = None) -> None:
    build_cli(__doc__, "HunyuanVideoPipeline", "tokenizers", write_skeleton, assemble, argv)


if __name__ == "__main__":
    main()
