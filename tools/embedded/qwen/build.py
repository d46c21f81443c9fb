"""Build the Qwen-Image-class model's untrained skeleton, and assemble the trained pipeline folder.

The skeleton is a ``QwenImagePipeline`` folder with configs, scheduler and tokenizer but **no
weights**; ``train.py`` builds every network from its config with a fixed seed and trains it;
:func:`assemble` puts configs, tokenizer and trained weights together into the shipped folder (fp16).

Tokenizer: a real ``Qwen2Tokenizer`` (byte-level BPE, Qwen2's pre-tokenizer regex, the special tokens
``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``), trained here with the ``tokenizers`` library on
the pipeline's prompt template and the data set's captions plus a short list of common English words,
so every word of the template and of the captions is one token.  ``QwenImagePipeline`` drops the
first 34 tokens of every prompt (its template prefix, hard-coded as
``prompt_template_encode_start_idx = 34``); :func:`build_tokenizer` checks that this tokenizer also
makes exactly 34 tokens of that prefix.  Any text tokenizes (byte fall-back).

Usage::

    python -m tools.embedded.qwen.build skeleton --out /tmp/qwen-skeleton
    python -m tools.embedded.qwen.build assemble --skeleton /tmp/qwen-skeleton \\
        --weights /tmp/qwen-weights --out embedded/lesa_embedded/qwen/pipeline
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.qwen.pairs import ALL_COMBOS

from ..common.bpe import train_byte_bpe, word_corpus
from ..common.folder import build_cli, save_pipeline_folder, write_skeleton_folder
from ..common.weights import load_networks
from ..common.words import COMMON_WORDS

# ------------------------------------------------------------------ architecture

Z_DIM = 4
TEXT_HIDDEN = 64
PROMPT_TEMPLATE_PREFIX_TOKENS = 34  # QwenImagePipeline.prompt_template_encode_start_idx

VAE_CONFIG: dict[str, Any] = dict(
    base_dim=8,
    z_dim=Z_DIM,
    dim_mult=[1, 2],  # one downsampling: vae_scale_factor 2, 40 px -> 20 x 20 latents
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False],
    dropout=0.0,
    latents_mean=[0.0] * Z_DIM,  # set from latent statistics after the VAE is trained
    latents_std=[1.0] * Z_DIM,
)

TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=2,
    in_channels=4 * Z_DIM,  # 2 x 2 packed latents: 10 x 10 = 100 image tokens
    out_channels=Z_DIM,
    num_layers=4,
    attention_head_dim=32,
    num_attention_heads=3,  # hidden 96
    joint_attention_dim=TEXT_HIDDEN,
    guidance_embeds=False,
    axes_dims_rope=(8, 12, 12),
)

TEXT_CONFIG: dict[str, Any] = dict(
    hidden_size=TEXT_HIDDEN,
    intermediate_size=192,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    tie_word_embeddings=True,
)

VISION_CONFIG: dict[str, Any] = dict(  # never used by the pipeline (text only); kept minimal
    depth=1,
    hidden_size=16,
    intermediate_size=32,
    num_heads=2,
    out_hidden_size=TEXT_HIDDEN,
    fullatt_block_indexes=[0],
    window_size=28,
)

SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=1.0,  # mu = 1.0 at 100 tokens: shift e ~ 2.72, as for the FLUX-class model
    max_shift=1.15,
    base_image_seq_len=100,
    max_image_seq_len=4096,
    shift_terminal=None,
    time_shift_type="exponential",
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _template_text() -> str:
    return (
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
        "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def build_tokenizer():
    """A ``Qwen2Tokenizer`` (byte-level BPE) trained on the template, the captions and common words."""
    from transformers import Qwen2Tokenizer

    corpus = [_template_text().format(c.caption) for c in ALL_COMBOS] + word_corpus(COMMON_WORDS)
    tok = train_byte_bpe(corpus, SPECIAL_TOKENS)
    qwen = Qwen2Tokenizer(tokenizer_object=tok, model_max_length=128)
    qwen.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    prefix = _template_text().split("{}")[0]
    n = len(qwen(prefix).input_ids)
    if n != PROMPT_TEMPLATE_PREFIX_TOKENS:
        raise RuntimeError(
            f"template prefix is {n} tokens, QwenImagePipeline drops {PROMPT_TEMPLATE_PREFIX_TOKENS}"
        )
    return qwen


# ------------------------------------------------------------------ components


def _text_encoder(vocab_size: int, tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            bos_token_id=None,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            **TEXT_CONFIG,
        ),
        vision_config=VISION_CONFIG,
        image_token_id=vocab_size - 1,
        video_token_id=vocab_size - 1,
        vision_start_token_id=vocab_size - 1,
        vision_end_token_id=vocab_size - 1,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    return Qwen2_5_VLForConditionalGeneration(cfg)


def build_components(tokenizer=None, seed: int = 0) -> dict[str, Any]:
    """All pipeline components, networks randomly initialised from ``seed``, in ``eval()`` mode."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(**VAE_CONFIG)
    torch.manual_seed(seed + 1)
    transformer = QwenImageTransformer2DModel(**TRANSFORMER_CONFIG)
    torch.manual_seed(seed + 2)
    text_encoder = _text_encoder(len(tokenizer), tokenizer)
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
    )


def make_pipeline(components: dict[str, Any]):
    from diffusers import QwenImagePipeline

    return QwenImagePipeline(**components)


def write_skeleton(out: str | os.PathLike) -> Path:
    """Write the skeleton: model_index.json, configs, scheduler, tokenizer; no weight files."""
    return write_skeleton_folder(make_pipeline(build_components(seed=0)), out)


def load_skeleton(skeleton: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """Components built from a skeleton folder's configs and tokenizer, initialised from ``seed``."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    sk = Path(skeleton)
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage.from_config(AutoencoderKLQwenImage.load_config(sk / "vae"))
    torch.manual_seed(seed + 1)
    transformer = QwenImageTransformer2DModel.from_config(
        QwenImageTransformer2DModel.load_config(sk / "transformer")
    )
    torch.manual_seed(seed + 2)
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(sk / "text_encoder"))
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(sk / "scheduler"),
        vae=vae.eval(),
        text_encoder=text_encoder.float().eval(),
        tokenizer=AutoTokenizer.from_pretrained(sk / "tokenizer"),
        transformer=transformer.eval(),
    )


NETWORKS = ("vae", "transformer", "text_encoder")
LM_HEAD_TIED = ("lm_head.weight",)  # tied to the token embeddings: never saved, so never loaded


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
    comps["vae"].register_to_config(latents_mean=meta["latents_mean"], latents_std=meta["latents_std"])
    load_networks(comps, weights, NETWORKS, tied=LM_HEAD_TIED)
    return save_pipeline_folder(make_pipeline(comps), out, ("text_encoder",), dtype)


def main(argv: list[str] | None = None) -> None:
    build_cli(__doc__, "QwenImagePipeline", "tokenizer", write_skeleton, assemble, argv)


if __name__ == "__main__":
    main()
