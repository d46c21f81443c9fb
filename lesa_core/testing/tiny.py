"""Tiny random-init diffusers backbones and pipelines, built offline in milliseconds (test kit).

Every builder seeds torch, builds from configs (no download, no file), puts every component in
``.eval()`` (models built from a config start in training mode, and dropout would make two runs
differ), and returns real diffusers objects: ``FluxPipeline``, ``QwenImagePipeline``,
``HunyuanVideoPipeline``, ``WanPipeline`` and their transformers. The tokenizers are byte-level toy
vocabularies built in code.

diffusers and transformers are imported inside the functions: importing this module is cheap.

Bare transformers come with :func:`transformer_inputs`, the keyword arguments of one forward call
(``timestep`` included, in the units the backbone's pipeline passes).
"""

from __future__ import annotations

import importlib
import string
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "config_inputs",
    "register_inputs",
    "tiny_cogview4_transformer",
    "tiny_flux_pipeline",
    "tiny_flux_transformer",
    "tiny_hunyuan_video_pipeline",
    "tiny_hunyuan_video_transformer",
    "tiny_lumina2_transformer",
    "tiny_pixart_sigma_pipeline",
    "tiny_pixart_transformer",
    "tiny_qwen_image_pipeline",
    "tiny_qwen_image_transformer",
    "tiny_sana_transformer",
    "tiny_sd3_pipeline",
    "tiny_sd3_transformer",
    "tiny_wan_pipeline",
    "tiny_wan_transformer",
    "transformer_inputs",
]


# ----------------------------------------------------------------------------- tokenizers


def _lib(name: str) -> Any:
    """A library module, imported on use (typed ``Any``: these builders only call constructors)."""
    return importlib.import_module(name)


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table (transformers 5 no longer exports it)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in keep]
    table = {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(extra)}}
    return [table[b] for b in range(256)]


def _clip_tokenizer() -> Any:
    transformers = _lib("transformers")

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer() -> Any:
    transformers = _lib("transformers")

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(c, -2.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return transformers.T5Tokenizer(vocab=pieces, extra_ids=0)


def _qwen_tokenizer() -> Any:
    transformers = _lib("transformers")

    vocab = {c: i for i, c in enumerate(_byte_chars())}
    tok = transformers.Qwen2Tokenizer(vocab=vocab, merges=[])
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                            "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    return tok


def _llama_tokenizer() -> Any:
    transformers = _lib("transformers")

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3}
    for c in string.printable.strip():
        vocab.setdefault(c, len(vocab))
    tok = transformers.LlamaTokenizer(vocab=vocab, merges=[])
    tok.add_special_tokens({"pad_token": "<pad>"})
    return tok


def _eval(*modules: Any) -> None:
    for module in modules:
        module.eval()


# ----------------------------------------------------------------------------- transformers


def tiny_flux_transformer(seed: int = 0, in_channels: int = 4, **overrides: Any) -> Any:
    """A ``FluxTransformer2DModel`` with 1 double and 1 single block, width 32."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(patch_size=1, in_channels=in_channels, num_layers=1, num_single_layers=1,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=32, guidance_embeds=False, axes_dims_rope=(4, 4, 8))
    kwargs.update(overrides)
    return diffusers.FluxTransformer2DModel(**kwargs).eval()


def tiny_qwen_image_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``QwenImageTransformer2DModel`` with 2 blocks, width 48."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
                                  num_attention_heads=3, joint_attention_dim=16, axes_dims_rope=(8, 4, 4))
    kwargs.update(overrides)
    return diffusers.QwenImageTransformer2DModel(**kwargs).eval()


def tiny_hunyuan_video_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``HunyuanVideoTransformer3DModel`` with 1 double, 1 single and 1 refiner block, width 20."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
                                  num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=1,
                                  patch_size_t=1, guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8,
                                  rope_axes_dim=(2, 4, 4))
    kwargs.update(overrides)
    return diffusers.HunyuanVideoTransformer3DModel(**kwargs).eval()


def tiny_wan_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``WanTransformer3DModel`` with 2 blocks, width 24 (patch 1×2×2)."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                                  out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
                                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    kwargs.update(overrides)
    return diffusers.WanTransformer3DModel(**kwargs).eval()


def tiny_sd3_transformer(seed: int = 0, **overrides: Any) -> Any:
    """An ``SD3Transformer2DModel`` with 2 joint blocks, width 32 (patch 1)."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(sample_size=32, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8,
                                  num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                  pooled_projection_dim=64, out_channels=4)
    kwargs.update(overrides)
    return diffusers.SD3Transformer2DModel(**kwargs).eval()


def tiny_pixart_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``PixArtTransformer2DModel`` (PixArt-α/Σ) with 2 blocks, width 16 (patch 2, learned sigma)."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                  num_layers=2, cross_attention_dim=16, sample_size=8, patch_size=2,
                                  caption_channels=16, norm_num_groups=1)
    kwargs.update(overrides)
    return diffusers.PixArtTransformer2DModel(**kwargs).eval()


def tiny_sana_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``SanaTransformer2DModel`` with 2 blocks, width 16 (patch 1)."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                                  num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8,
                                  cross_attention_dim=16, caption_channels=16, sample_size=8, patch_size=1)
    kwargs.update(overrides)
    return diffusers.SanaTransformer2DModel(**kwargs).eval()


def tiny_lumina2_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``Lumina2Transformer2DModel`` (Lumina-Image 2.0) with 2 layers and 1 refiner layer each, width 24."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(sample_size=8, patch_size=2, in_channels=4, hidden_size=24, num_layers=2,
                                  num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16,
                                  axes_dim_rope=(4, 4, 4), axes_lens=(64, 32, 32), cap_feat_dim=16)
    kwargs.update(overrides)
    return diffusers.Lumina2Transformer2DModel(**kwargs).eval()


def tiny_cogview4_transformer(seed: int = 0, **overrides: Any) -> Any:
    """A ``CogView4Transformer2DModel`` with 2 blocks, width 16 (patch 2)."""
    diffusers = _lib("diffusers")

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
                                  num_attention_heads=2, text_embed_dim=16, time_embed_dim=8, condition_dim=4,
                                  pos_embed_max_size=16, sample_size=8, rope_axes_dim=(4, 4))
    kwargs.update(overrides)
    return diffusers.CogView4Transformer2DModel(**kwargs).eval()


InputBuilder = Callable[..., dict[str, Any]]
"""``builder(model, *, batch, height, width, frames, text_tokens, t, randn) -> forward kwargs``."""

_INPUT_BUILDERS: dict[str, InputBuilder] = {}


def register_inputs(class_name: str, builder: InputBuilder) -> None:
    """Teach :func:`transformer_inputs` one transformer class (the hook for adapter packages whose model the
    config-derived inputs do not fit): ``builder(model, *, batch, height, width, frames, text_tokens, t,
    randn)`` returns the keyword arguments of one forward call, ``randn(*shape)`` drawing seeded noise."""
    _INPUT_BUILDERS[class_name] = builder


_TEXT_WIDTH_KEYS = ("joint_attention_dim", "caption_channels", "cross_attention_dim", "text_embed_dim", "text_dim",
                    "cap_feat_dim", "context_dim")


def config_inputs(model: Any, *, batch: int, height: int, width: int, frames: int, text_tokens: int, t: float,
                  randn: Callable[..., torch.Tensor], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Forward arguments built from the model's own config and ``forward`` signature, for a class no builder
    knows: the latent channels first (``(B, C, F, H, W)`` for a ``*3DModel``), ``timestep`` ``1000 t``, the
    text stream as wide as the config's text width, masks of ones, pooled projections; every other argument
    with a default is left out. ``extra`` adds (or replaces) arguments a builder knows better.

    :raises TypeError: naming a required argument it cannot build (register a builder: :func:`register_inputs`).
    """
    import inspect

    cfg = model.config
    params = list(inspect.signature(type(model).forward).parameters.values())[1:]
    names = {p.name for p in params}
    text = next((int(cfg[k]) for k in _TEXT_WIDTH_KEYS if cfg.get(k) is not None), None)
    channels = int(cfg.get("in_channels") or 4)
    video = type(model).__name__.endswith("3DModel")
    out: dict[str, Any] = {"hidden_states": randn(batch, channels, frames, height, width) if video
                           else randn(batch, channels, height, width),
                           "timestep": torch.full((batch,), 1000.0 * t)}
    if "encoder_hidden_states" in names and text is not None:
        out["encoder_hidden_states"] = randn(batch, text_tokens, text)
    for mask in ("encoder_attention_mask", "encoder_hidden_states_mask"):
        if mask in names:
            out[mask] = torch.ones(batch, text_tokens)
    if "pooled_projections" in names and cfg.get("pooled_projection_dim") is not None:
        out["pooled_projections"] = randn(batch, int(cfg["pooled_projection_dim"]))
    out.update(extra or {})
    missing = [p.name for p in params if p.default is p.empty and p.name not in out
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise TypeError(f"no tiny inputs for {type(model).__name__}: cannot build {missing} from its config; "
                        "register a builder with lesa_core.testing.tiny.register_inputs")
    return {k: v for k, v in out.items() if k in names}


def _pixart_inputs(model: Any, **kw: Any) -> dict[str, Any]:
    return config_inputs(model, **kw, extra={"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}})


def _lumina2_inputs(model: Any, **kw: Any) -> dict[str, Any]:
    batch, tokens = kw["batch"], kw["text_tokens"]
    return config_inputs(model, **kw, extra={  # Lumina2 runs time the other way: 0 = noise
        "encoder_attention_mask": torch.ones(batch, tokens, dtype=torch.bool),
        "timestep": torch.full((batch,), 1.0 - kw["t"])})


def _cogview4_inputs(model: Any, **kw: Any) -> dict[str, Any]:
    size = torch.tensor([[8.0 * kw["height"], 8.0 * kw["width"]]] * kw["batch"])
    return config_inputs(model, **kw, extra={"original_size": size, "target_size": size.clone(),
                                             "crop_coords": torch.zeros(kw["batch"], 2)})


register_inputs("PixArtTransformer2DModel", _pixart_inputs)
register_inputs("Lumina2Transformer2DModel", _lumina2_inputs)
register_inputs("CogView4Transformer2DModel", _cogview4_inputs)


def transformer_inputs(model: Any, *, batch: int = 1, height: int = 4, width: int = 4, frames: int = 1,
                       text_tokens: int = 6, t: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of one forward call of a tiny transformer at flow time ``t``.

    ``height``/``width`` count latent pixels (FLUX: tokens). The timestep is in the units the
    backbone's pipeline passes (FLUX, Qwen-Image: t; HunyuanVideo, Wan: 1000 t). A class none of the
    builders here knows gets a builder registered with :func:`register_inputs`, else inputs derived from
    its config and ``forward`` signature (:func:`config_inputs`).
    """
    g = torch.Generator().manual_seed(seed)
    name = type(model).__name__
    cfg = model.config

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    if name == "FluxTransformer2DModel":
        img_ids = torch.zeros(height, width, 3)
        img_ids[..., 1] = torch.arange(height)[:, None]
        img_ids[..., 2] = torch.arange(width)[None, :]
        return dict(hidden_states=randn(batch, height * width, cfg.in_channels),
                    encoder_hidden_states=randn(batch, text_tokens, cfg.joint_attention_dim),
                    pooled_projections=randn(batch, cfg.pooled_projection_dim),
                    timestep=torch.full((batch,), t), img_ids=img_ids.reshape(-1, 3),
                    txt_ids=torch.zeros(text_tokens, 3))
    if name == "QwenImageTransformer2DModel":
        p = cfg.patch_size
        return dict(hidden_states=randn(batch, (height // p) * (width // p), cfg.in_channels),
                    encoder_hidden_states=randn(batch, text_tokens, cfg.joint_attention_dim),
                    encoder_hidden_states_mask=torch.ones(batch, text_tokens),
                    timestep=torch.full((batch,), t), img_shapes=[[(1, height // p, width // p)]] * batch)
    if name == "HunyuanVideoTransformer3DModel":
        return dict(hidden_states=randn(batch, cfg.in_channels, frames, height, width),
                    timestep=torch.full((batch,), 1000.0 * t),
                    encoder_hidden_states=randn(batch, text_tokens, cfg.text_embed_dim),
                    encoder_attention_mask=torch.ones(batch, text_tokens),
                    pooled_projections=randn(batch, cfg.pooled_projection_dim),
                    guidance=torch.full((batch,), 6000.0))
    if name == "WanTransformer3DModel":
        return dict(hidden_states=randn(batch, cfg.in_channels, frames, height, width),
                    timestep=torch.full((batch,), 1000.0 * t),
                    encoder_hidden_states=randn(batch, text_tokens, cfg.text_dim))
    if name == "SD3Transformer2DModel":
        return dict(hidden_states=randn(batch, cfg.in_channels, height, width),
                    encoder_hidden_states=randn(batch, text_tokens, cfg.joint_attention_dim),
                    pooled_projections=randn(batch, cfg.pooled_projection_dim),
                    timestep=torch.full((batch,), 1000.0 * t))
    builder = next((_INPUT_BUILDERS[k.__name__] for k in type(model).__mro__ if k.__name__ in _INPUT_BUILDERS),
                   config_inputs)
    return builder(model, batch=batch, height=height, width=width, frames=frames, text_tokens=text_tokens, t=t,
                   randn=randn)


# ----------------------------------------------------------------------------- pipelines


def tiny_flux_pipeline(seed: int = 0) -> Any:
    """A ``FluxPipeline`` (tiny transformer, CLIP, T5, VAE) — use ``height=width=32`` or multiples of 16."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")

    transformer = tiny_flux_transformer(seed)
    torch.manual_seed(seed)
    clip = transformers.CLIPTextModel(transformers.CLIPTextConfig(vocab_size=514, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, projection_dim=32, bos_token_id=512, eos_token_id=513,
                                        pad_token_id=513))
    t5 = transformers.T5EncoderModel(transformers.T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                 decoder_start_token_id=0))
    vae = diffusers.AutoencoderKL(sample_size=32, block_out_channels=(4,), layers_per_block=1, latent_channels=1,
                        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                        scaling_factor=1.5035)
    _eval(clip, t5, vae)
    return diffusers.FluxPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip,
                        tokenizer=_clip_tokenizer(), text_encoder_2=t5, tokenizer_2=_t5_tokenizer(),
                        transformer=transformer, image_encoder=None, feature_extractor=None)


def tiny_qwen_image_pipeline(seed: int = 0) -> Any:
    """A ``QwenImagePipeline`` (tiny transformer, Qwen2.5-VL text encoder, Qwen-Image VAE); 32×32."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")

    transformer = tiny_qwen_image_transformer(seed)
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    tokenizer = _qwen_tokenizer()
    vocab = 300
    text_config = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default",
                                                            "type": "default"},
                       rope_theta=1000000.0, vocab_size=vocab, bos_token_id=tokenizer.eos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    vision_config = dict(depth=2, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16)
    config = transformers.Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, hidden_size=16,
                              vocab_size=vocab, vision_start_token_id=296, vision_end_token_id=297,
                              image_token_id=298, video_token_id=299)
    text_encoder = transformers.Qwen2_5_VLForConditionalGeneration(config)
    _eval(vae, text_encoder)
    pipe = diffusers.QwenImagePipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                             tokenizer=tokenizer, transformer=transformer)
    prefix = pipe.prompt_template_encode.split("{}")[0]
    pipe.prompt_template_encode_start_idx = len(tokenizer(prefix).input_ids)
    return pipe


def tiny_hunyuan_video_pipeline(seed: int = 0) -> Any:
    """A ``HunyuanVideoPipeline`` (tiny transformer, Llama, CLIP, video VAE). Call it with
    ``prompt_template={"template": "{}", "crop_start": 0}``, 16×16, 1 or 5 frames."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")

    transformer = tiny_hunyuan_video_transformer(seed)
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=4,
                                    down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4,
                                    block_out_channels=(8, 8, 8, 8), layers_per_block=1, act_fn="silu",
                                    norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8,
                                    temporal_compression_ratio=4, mid_block_add_attention=True)
    llama_tok = _llama_tokenizer()
    llama = transformers.LlamaModel(transformers.LlamaConfig(vocab_size=max(128, len(llama_tok)), hidden_size=16, intermediate_size=37,
                                   num_attention_heads=4, num_hidden_layers=2, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=llama_tok.pad_token_id, hidden_act="gelu"))
    clip = transformers.CLIPTextModel(transformers.CLIPTextConfig(vocab_size=514, hidden_size=8, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, projection_dim=8, bos_token_id=512, eos_token_id=513,
                                        pad_token_id=513))
    _eval(vae, llama, clip)
    return diffusers.HunyuanVideoPipeline(text_encoder=llama, tokenizer=llama_tok, transformer=transformer, vae=vae,
                                scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=clip,
                                tokenizer_2=_clip_tokenizer())


def tiny_sd3_pipeline(seed: int = 0) -> Any:
    """A ``StableDiffusion3Pipeline`` (tiny transformer, two CLIPs with projection, T5, VAE); 32×32.
    With ``guidance_scale > 1`` it batches ``[uncond, cond]`` in one transformer call."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")

    transformer = tiny_sd3_transformer(seed)
    torch.manual_seed(seed)

    def clip() -> Any:
        return transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
            vocab_size=514, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            projection_dim=32, bos_token_id=512, eos_token_id=513, pad_token_id=513))

    clip_1, clip_2 = clip(), clip()
    t5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=128, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    vae = diffusers.AutoencoderKL(sample_size=32, block_out_channels=(4,), layers_per_block=1, latent_channels=4,
                                  norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                                  shift_factor=0.0609, scaling_factor=1.5035)
    _eval(clip_1, clip_2, t5, vae)
    return diffusers.StableDiffusion3Pipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip_1, tokenizer=_clip_tokenizer(),
        text_encoder_2=clip_2, tokenizer_2=_clip_tokenizer(), text_encoder_3=t5, tokenizer_3=_t5_tokenizer(),
        transformer=transformer)


def tiny_pixart_sigma_pipeline(seed: int = 0) -> Any:
    """A ``PixArtSigmaPipeline`` (tiny transformer, T5, VAE, DPM-Solver); 16×16. Call it with
    ``clean_caption=False, use_resolution_binning=False``; with ``guidance_scale > 1`` it batches
    ``[uncond, cond]`` in one transformer call, and its transformer has no ``cache_context``."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")

    transformer = tiny_pixart_transformer(seed, caption_channels=32)
    torch.manual_seed(seed)
    t5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=128, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    vae = diffusers.AutoencoderKL(sample_size=32, block_out_channels=(4,), layers_per_block=1, latent_channels=4,
                                  norm_num_groups=1)
    _eval(t5, vae)
    return diffusers.PixArtSigmaPipeline(tokenizer=_t5_tokenizer(), text_encoder=t5, vae=vae, transformer=transformer,
                                         scheduler=diffusers.DPMSolverMultistepScheduler())


def tiny_wan_pipeline(seed: int = 0) -> Any:
    """A ``WanPipeline`` (tiny transformer, UMT5, Wan VAE, flow-matching Euler); 16×16, 1 or 5 frames."""
    diffusers = _lib("diffusers")
    transformers = _lib("transformers")

    transformer = tiny_wan_transformer(seed, in_channels=4, out_channels=4)
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    text_encoder = transformers.UMT5EncoderModel(transformers.UMT5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                                               eos_token_id=1, decoder_start_token_id=0))
    _eval(vae, text_encoder)
    return diffusers.WanPipeline(tokenizer=_t5_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=5.0))
