"""Build the embedded model's untrained skeleton, and assemble the trained pipeline folder.

The skeleton is a ``FluxPipeline`` folder with configs, scheduler and tokenizers but **no
weights**: ``train.py`` builds every network from its config with a fixed seed, trains it and writes
the weights; :func:`assemble` puts configs, tokenizers and trained weights back together into the
shipped ``FluxPipeline`` folder (fp16 safetensors).

Tokenizers (both real ``transformers`` classes, saved as ``tokenizer.json`` so nothing beyond
``transformers`` is needed at run time):

* CLIP slot: ``CLIPTokenizer`` with OpenAI CLIP's byte-level BPE (49,408 tokens), read from the
  ``bpe_simple_vocab_16e6.txt.gz`` file that the open-clip-torch wheel ships (MIT).  open-clip-torch
  is needed at **build** time only (``pip install --no-deps open-clip-torch``).
* T5 slot: ``T5TokenizerFast`` (SentencePiece-style Unigram) built in code: ``<pad>``, ``</s>``,
  ``<unk>``, ``▁``, printable ASCII characters as a fall-back, and ``▁word`` pieces for the first 4,000
  whole words of the CLIP BPE vocabulary (a general English word list) plus the data set's few
  missing words ("triangle", "cyan").  Any text tokenizes; unknown words fall back to characters.

Usage::

    python -m tools.embedded.flux.build skeleton --out /tmp/embedded-skeleton
    python -m tools.embedded.flux.build assemble --skeleton /tmp/embedded-skeleton \\
        --weights /tmp/embedded-weights --out embedded/lesa_embedded/flux/pipeline
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import string
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.flux.shapes import ALL_COMBOS

from ..common.folder import build_cli, save_pipeline_folder, write_skeleton_folder
from ..common.weights import load_networks

# ------------------------------------------------------------------ architecture

TEXT_TOKENS = 32  # CLIP model_max_length and the T5 max_sequence_length the model is trained with
IMAGE_SIZE = 64
LATENT_CHANNELS = 4

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=16,
    sample_size=IMAGE_SIZE,
    scaling_factor=1.0,  # set from latent statistics after the VAE is trained
    shift_factor=0.0,
    force_upcast=False,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)

TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=1,
    in_channels=4 * LATENT_CHANNELS,  # 2 × 2 packed latents
    num_layers=2,  # double-stream (MM-DiT) blocks
    num_single_layers=6,
    attention_head_dim=64,
    num_attention_heads=3,  # hidden 192
    joint_attention_dim=128,  # = T5 d_model
    pooled_projection_dim=32,  # = CLIP hidden size
    guidance_embeds=False,
    axes_dims_rope=(16, 24, 24),
)

CLIP_CONFIG: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=32,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=TEXT_TOKENS,
    projection_dim=32,
    hidden_act="quick_gelu",
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

T5_CONFIG: dict[str, Any] = dict(
    d_model=128,
    d_kv=32,
    d_ff=256,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=16,
    relative_attention_max_distance=64,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    tie_word_embeddings=False,
)

# FLUX's scheduler, with the shift at 256 image tokens raised from 0.5 to 1.0 (exp(1) ≈ 2.72, close
# to FLUX.1-dev's shift at 1024 px), so that the 50-step schedule spends ~1/4 of its steps at t > 0.9.
SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=1.0,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)

T5_WORDS = 4000


# ------------------------------------------------------------------ tokenizers


def _clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "building the CLIP tokenizer needs the open-clip-torch wheel (build time only): "
            "pip install --no-deps open-clip-torch"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


def _byte_chars() -> list[str]:
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in keep]
    table = {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(extra)}}
    return [table[b] for b in keep] + [table[b] for b in extra]  # OpenAI's order


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    with gzip.open(_clip_bpe_path()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[misc]


def build_clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=TEXT_TOKENS,
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def build_t5_tokenizer(clip_vocab: dict[str, int]):
    from transformers import T5TokenizerFast

    words: list[str] = []
    for tok in list(clip_vocab)[512:]:
        w = tok[:-4]
        if tok.endswith("</w>") and len(w) > 1 and w.isascii() and w.isalpha():
            words.append(w)
        if len(words) >= T5_WORDS:
            break
    domain = sorted({w for c in ALL_COMBOS for w in c.caption.split()} - set(words))
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -9.0)]
    pieces += [(c, -12.0) for c in string.printable[:94]]  # printable ASCII without whitespace
    seen = {p for p, _ in pieces}
    ordered = ["a", "i", *words, *domain]
    for i, w in enumerate(ordered):
        if "▁" + w not in seen:
            pieces.append(("▁" + w, -8.0 - 2.0 * i / len(ordered)))
            seen.add("▁" + w)
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=TEXT_TOKENS)


# ------------------------------------------------------------------ components


def build_components(tokenizer=None, tokenizer_2=None, seed: int = 0) -> dict[str, Any]:
    """All pipeline components, networks randomly initialised from ``seed``, in ``eval()`` mode."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    if tokenizer is None:
        vocab, merges = clip_vocab_and_merges()
        tokenizer = build_clip_tokenizer(vocab, merges)
        tokenizer_2 = build_t5_tokenizer(vocab)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    torch.manual_seed(seed + 1)
    transformer = FluxTransformer2DModel(**TRANSFORMER_CONFIG)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG))
    torch.manual_seed(seed + 3)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), **T5_CONFIG))
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval(),
    )


def make_pipeline(components: dict[str, Any]):
    from diffusers import FluxPipeline

    return FluxPipeline(**components, image_encoder=None, feature_extractor=None)


def write_skeleton(out: str | os.PathLike) -> Path:
    """Write the skeleton: model_index.json, configs, scheduler, tokenizers; no weight files."""
    return write_skeleton_folder(make_pipeline(build_components(seed=0)), out)


def load_skeleton(skeleton: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """Components built from a skeleton folder's configs and tokenizers, initialised from ``seed``."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        T5Config,
        T5EncoderModel,
        T5TokenizerFast,
    )

    sk = Path(skeleton)
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(sk / "vae"))
    torch.manual_seed(seed + 1)
    transformer = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(sk / "transformer"))
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(sk / "text_encoder"))
    torch.manual_seed(seed + 3)
    text_encoder_2 = T5EncoderModel(T5Config.from_pretrained(sk / "text_encoder_2"))
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(sk / "scheduler"),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=CLIPTokenizer.from_pretrained(sk / "tokenizer"),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=T5TokenizerFast.from_pretrained(sk / "tokenizer_2"),
        transformer=transformer.eval(),
    )


NETWORKS = ("vae", "transformer", "text_encoder", "text_encoder_2")
T5_TIED = ("encoder.embed_tokens.weight",)  # T5 ties it to shared.weight: never saved, so never loaded


def assemble(
    skeleton: str | os.PathLike,
    weights: str | os.PathLike,
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Skeleton + trained weights (``<weights>/<component>.safetensors`` and ``meta.json``) → pipeline."""
    weights = Path(weights)
    comps = load_skeleton(skeleton)
    meta = json.loads((weights / "meta.json").read_text())
    comps["vae"].register_to_config(
        scaling_factor=float(meta["vae_scaling_factor"]), shift_factor=float(meta["vae_shift_factor"])
    )
    load_networks(comps, weights, NETWORKS, tied=T5_TIED)
    return save_pipeline_folder(make_pipeline(comps), out, ("text_encoder", "text_encoder_2"), dtype)


def main(argv: list[str] | None = None) -> None:
    build_cli(__doc__, "FluxPipeline", "tokenizers", write_skeleton, assemble, argv)


if __name__ == "__main__":
    main()
