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

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.qwen.pairs import ALL_COMBOS

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
COMMON_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "at",
    "by",
    "this",
    "be",
    "from",
    "or",
    "an",
    "are",
    "not",
    "have",
    "but",
    "what",
    "all",
    "were",
    "when",
    "we",
    "there",
    "can",
    "your",
    "which",
    "their",
    "said",
    "if",
    "do",
    "will",
    "each",
    "about",
    "how",
    "up",
    "out",
    "them",
    "then",
    "she",
    "many",
    "some",
    "so",
    "these",
    "would",
    "other",
    "into",
    "has",
    "more",
    "her",
    "two",
    "like",
    "him",
    "see",
    "time",
    "could",
    "no",
    "make",
    "than",
    "first",
    "been",
    "its",
    "who",
    "now",
    "people",
    "my",
    "made",
    "over",
    "did",
    "down",
    "only",
    "way",
    "find",
    "use",
    "may",
    "water",
    "long",
    "little",
    "very",
    "after",
    "words",
    "called",
    "just",
    "where",
    "most",
    "know",
    "get",
    "through",
    "back",
    "much",
    "before",
    "go",
    "good",
    "new",
    "write",
    "our",
    "used",
    "me",
    "man",
    "too",
    "any",
    "day",
    "same",
    "right",
    "look",
    "think",
    "also",
    "around",
    "another",
    "came",
    "come",
    "work",
    "three",
    "word",
    "must",
    "because",
    "does",
    "part",
    "picture",
    "photo",
    "image",
    "drawing",
    "small",
    "large",
    "big",
    "tiny",
    "huge",
    "bright",
    "dark",
    "light",
    "colour",
    "color",
    "shape",
    "object",
    "below",
    "under",
    "beside",
    "next",
    "near",
    "right",
    "behind",
    "front",
    "top",
    "bottom",
    "center",
    "middle",
    "orange",
    "pink",
    "black",
    "grey",
    "gray",
    "brown",
    "cyan",
    "star",
    "heart",
    "cross",
    "line",
    "dot",
    "ring",
    "box",
    "ball",
    "cube",
    "cat",
    "dog",
    "tree",
    "house",
    "sky",
    "sun",
]


def _template_text() -> str:
    return (
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
        "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def build_tokenizer():
    """A ``Qwen2Tokenizer`` (byte-level BPE) trained on the template, the captions and common words."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    qwen_split = (  # Qwen2's pre-tokenizer pattern
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
        r"|\s+(?!\S)|\s+"
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(qwen_split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    corpus = [_template_text().format(c.caption) for c in ALL_COMBOS]
    corpus += [" ".join(COMMON_WORDS), " ".join(w.capitalize() for w in COMMON_WORDS)] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
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
    out = Path(out)
    make_pipeline(build_components(seed=0)).save_pretrained(out)
    for pattern in ("*.safetensors", "*.safetensors.index.json"):
        for f in out.rglob(pattern):
            f.unlink()
    return out


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


def assemble(
    skeleton: str | os.PathLike,
    weights: str | os.PathLike,
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Skeleton + trained weights (``<weights>/<component>.safetensors``, ``meta.json``) → pipeline."""
    from safetensors.torch import load_file

    weights, out = Path(weights), Path(out)
    comps = load_skeleton(skeleton)
    meta = json.loads((weights / "meta.json").read_text())
    comps["vae"].register_to_config(latents_mean=meta["latents_mean"], latents_std=meta["latents_std"])
    for name in NETWORKS:
        sd = load_file(weights / f"{name}.safetensors")
        missing, unexpected = comps[name].load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
        if missing or unexpected:
            raise RuntimeError(f"{name}: missing {missing}, unexpected {unexpected}")
    pipe = make_pipeline(comps)
    pipe.to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    # a plain from_pretrained(out) should give fp32 everywhere, as diffusers' components do
    cfg_path = out / "text_encoder" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"
    for sub in ("text_config", "vision_config"):
        if isinstance(cfg.get(sub), dict):
            cfg[sub]["dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("skeleton", help="write the untrained skeleton (configs + tokenizer)")
    s.add_argument("--out", required=True)
    a = sub.add_parser("assemble", help="skeleton + trained weights -> fp16 QwenImagePipeline folder")
    a.add_argument("--skeleton", required=True)
    a.add_argument("--weights", required=True)
    a.add_argument("--out", required=True)
    args = p.parse_args(argv)
    print(
        write_skeleton(args.out)
        if args.cmd == "skeleton"
        else assemble(args.skeleton, args.weights, args.out)
    )


if __name__ == "__main__":
    main()
