"""Train the embedded default model: VAE first, then transformer + both text encoders jointly.

::

    python -m tools.embedded.flux.build skeleton --out SKELETON
    python -m tools.embedded.flux.train --skeleton SKELETON --out WEIGHTS --device cuda --budget-seconds 330
    python -m tools.embedded.flux.build assemble --skeleton SKELETON --weights WEIGHTS --out PIPELINE

Stage 1 (VAE, ``--vae-fraction`` of the budget): ``AutoencoderKL`` on shapes images in [-1, 1], loss
L1 + MSE + 1e-6 · KL.  Then the latent mean/std of 4,096 training images set the VAE's
``shift_factor``/``scaling_factor``, exactly as the pipeline undoes them before decoding.

Stage 2 (the rest): rectified flow on the packed, normalised latents (256 image tokens):
``x_σ = (1 − σ)·x0 + σ·ε``, the transformer predicts ``ε − x0`` (MSE), ``σ`` is logit-normal(0, 1)
pushed through the scheduler's shift ``exp(μ)`` with μ from the shipped
``FlowMatchEulerDiscreteScheduler`` config at 256 tokens (the same shift the pipeline samples with).
Text: CLIP pooled output → ``pooled_projections``, T5 last hidden state (32 tokens) →
``encoder_hidden_states``, both trained jointly with the transformer; 10 % of captions are replaced by
the empty prompt (so true CFG with ``negative_prompt=""`` is possible).  AdamW, warm-up + cosine,
clip 1.0, EMA of the weights (0.999) is what is saved.  bf16 autocast on CUDA, fp32 on the CPU.

Budget: with ``--budget-seconds`` the step counts are fixed after timing the first steps and are
written to the log (``vae_steps``, ``steps``): passing them back as ``--vae-steps``/``--steps``
repeats the run exactly on the same device type.  All data come from :mod:`lesa_embedded.flux.shapes` with fixed seeds.

Outputs in ``--out``: ``vae.safetensors``, ``transformer.safetensors``, ``text_encoder.safetensors``,
``text_encoder_2.safetensors`` (fp16), ``meta.json`` (VAE factors, arguments, step counts,
evaluation), ``losses.csv`` (step, stage, loss, lr, seconds).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch
import torch.nn.functional as F

from lesa_embedded.flux import shapes

from ..common.cli import training_parser
from ..common.loop import FlowLogging, run_flow_stage
from ..common.optim import Ema, adamw, clipped_step, set_lr
from ..common.runlog import console_log, open_run
from ..common.schedule import StepBudget, exponential_shift, logit_normal_sigmas, lr_at, scheduler_mu
from ..common.weights import load_networks, read_meta, save_weights
from .build import NETWORKS, T5_TIED, TEXT_TOKENS, load_skeleton, make_pipeline

_log = console_log("train")


def load_init(folder: str, comps: dict[str, Any]) -> dict[str, Any]:
    """Load whatever networks ``folder`` holds into ``comps``; returns their names (+ VAE factors)."""
    meta = read_meta(folder)
    got: dict[str, Any] = dict.fromkeys(
        load_networks(comps, folder, NETWORKS, T5_TIED, only_present=True), True
    )
    if "vae" in got:
        got["vae_shift_factor"] = float(meta["vae_shift_factor"])
        got["vae_scaling_factor"] = float(meta["vae_scaling_factor"])
    _log(f"initialised from {folder}: {sorted(k for k in got if k in NETWORKS)}")
    return got


def tokenize(tokenizer, tokenizer_2, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids exactly as FluxPipeline makes them (CLIP: model_max_length; T5: TEXT_TOKENS)."""
    kw = dict(padding="max_length", truncation=True, return_tensors="pt")
    clip = tokenizer(captions, max_length=tokenizer.model_max_length, **kw).input_ids
    t5 = tokenizer_2(captions, max_length=TEXT_TOKENS, **kw).input_ids
    return clip, t5


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = training_parser(__doc__, budget_seconds=330.0, vae_fraction=0.2)
    p.add_argument("--batch-size", type=int, default=None, help="default 512 on CUDA, 32 on CPU")
    p.add_argument("--vae-batch-size", type=int, default=None, help="default 256 on CUDA, 32 on CPU")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument(
        "--amp", choices=["bf16", "fp32"], default="bf16", help="CUDA only; the CPU is always fp32"
    )
    p.add_argument(
        "--train-mu",
        type=float,
        default=None,
        help="σ shift μ for training (default: the scheduler's at 256 tokens)",
    )
    p.add_argument("--freeze-text", action="store_true", help="keep the text encoders fixed (fine-tuning)")
    p.add_argument(
        "--init-from", default=None, help="weights folder to start from (a saved VAE skips stage 1)"
    )
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-heldout", type=int, default=0, help="sample N held-out captions at the end")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)

    t_start = time.time()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bs = args.batch_size or (512 if cuda else 32)
    vbs = args.vae_batch_size or (256 if cuda else 32)
    if cuda and args.amp == "bf16":
        amp: dict[str, Any] = dict(device_type="cuda", dtype=torch.bfloat16)
    else:
        amp = dict(device_type=dev.type, enabled=False)
    out, log, comps = open_run(args, load_skeleton)
    vae, transformer = comps["vae"].to(dev), comps["transformer"].to(dev)
    te, te2 = comps["text_encoder"].to(dev), comps["text_encoder_2"].to(dev)
    for m in (te, te2):  # plain attention for training (SDPA + a trainable T5 bias is fragile on CUDA)
        try:
            m.set_attn_implementation("eager")
        except Exception:
            m.config._attn_implementation = "eager"
    init = load_init(args.init_from, comps) if args.init_from else {}
    n_params = {k: sum(p.numel() for p in comps[k].parameters()) for k in NETWORKS}
    _log(f"device {dev}, params {n_params}, batch {bs}/{vbs}")
    meta: dict[str, Any] = {"args": vars(args), "params": n_params, "device": str(dev)}
    if cuda:
        meta["gpu"] = torch.cuda.get_device_name(dev)

    # ---------------------------------------------------------------- stage 1: VAE
    sampler = shapes.TrainSampler("train", seed=args.seed, device=dev)
    vae.train()
    opt = adamw(vae.parameters(), args.vae_lr)
    vgen = torch.Generator(device=dev).manual_seed(args.seed + 500)
    vae_total = 0 if "vae" in init else args.vae_steps
    t0 = time.time()
    budget = StepBudget(args.budget_seconds * args.vae_fraction, 10, 30)
    step = 0
    while vae_total is None or step < vae_total:
        lr = lr_at(step, vae_total or 10**9, args.vae_lr, 100, floor=1.0 if vae_total is None else 0.1)
        set_lr(opt, lr)
        x, _ = sampler.next(vbs)
        with torch.autocast(**amp):
            post = vae.encode(x).latent_dist
            z = post.sample(generator=vgen)
            rec = vae.decode(z).sample
        rec = rec.float()
        loss_rec = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        clipped_step(opt, loss_rec + 1e-6 * post.kl().mean(), vae.parameters())
        if step % args.log_every == 0:
            log.stage_row("vae", step, loss_rec.item(), lr, t0)
            if step % (args.log_every * 4) == 0:
                _log(f"vae step {step} rec {loss_rec.item():.4f}")
        step += 1
        vae_total = budget.settle(step, vae_total, _log, "vae", ".1f")
    meta["vae_steps"] = step
    meta["vae_seconds"] = round(time.time() - t0, 1)
    if step:
        meta["vae_final_rec_loss"] = loss_rec.item()
    vae.eval().requires_grad_(False)
    if "vae" in init:
        meta["vae_steps"] = 0
        meta["vae_init_from"] = args.init_from

    # latent statistics -> shift/scale
    g = torch.Generator().manual_seed(args.seed + 1000)
    with torch.no_grad(), torch.autocast(**amp):
        zs = []
        for _ in range(8 if cuda else 2):
            imgs, _, _ = shapes.sample_batch(512 if cuda else 64, "train", generator=g, device=dev)
            zs.append(vae.encode(imgs * 2 - 1).latent_dist.mode().float())
        zs = torch.cat(zs)
    shift_factor, scaling_factor = float(zs.mean()), float(1.0 / zs.std())
    if "vae" in init:  # keep the factors the loaded weights were trained with
        shift_factor, scaling_factor = init["vae_shift_factor"], init["vae_scaling_factor"]
    meta.update(vae_shift_factor=shift_factor, vae_scaling_factor=scaling_factor)
    vae.register_to_config(shift_factor=shift_factor, scaling_factor=scaling_factor)
    _log(
        f"latents: shift {shift_factor:.4f} scale {scaling_factor:.4f}, per-channel std {zs.std((0, 2, 3)).tolist()}"
    )
    if "vae" not in init:
        save_weights(out, {"vae": vae}, meta)  # lets a failed stage 2 restart without retraining the VAE

    # ---------------------------------------------------------------- stage 2: transformer + text
    from diffusers import FluxPipeline

    clip_ids, t5_ids = tokenize(comps["tokenizer"], comps["tokenizer_2"], [*sampler.captions, ""])
    clip_ids, t5_ids = clip_ids.to(dev), t5_ids.to(dev)
    empty = len(sampler.captions)
    lat_hw = shapes.IMAGE_SIZE // 2  # vae_scale_factor 2
    img_ids = FluxPipeline._prepare_latent_image_ids(1, lat_hw // 2, lat_hw // 2, dev, torch.float32)
    txt_ids = torch.zeros(TEXT_TOKENS, 3, device=dev)
    mu = scheduler_mu(comps["scheduler"], (lat_hw // 2) ** 2) if args.train_mu is None else args.train_mu
    meta["train_mu"] = mu
    trained = [transformer] if args.freeze_text else [transformer, te, te2]
    if args.freeze_text:
        te.eval().requires_grad_(False)
        te2.eval().requires_grad_(False)
    for m in trained:
        m.train()
    params = [p for m in trained for p in m.parameters()]
    opt = adamw(params, args.lr)
    ema = Ema(params, args.ema)
    # noise, σ and caption dropout come from a generator on the training device: deterministic for
    # a given device type (CPU and CUDA streams differ)
    gen = torch.Generator(device=dev).manual_seed(args.seed + 2000)

    def forward_loss(x0: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        b = x0.shape[0]
        with torch.no_grad(), torch.autocast(**amp):
            z = vae.encode(x0).latent_dist.sample(generator=gen).float()
        z = (z - shift_factor) * scaling_factor
        z = FluxPipeline._pack_latents(z, b, z.shape[1], lat_hw, lat_hw)
        drop = torch.rand(b, generator=gen, device=dev) < args.caption_dropout
        cidx = torch.where(drop, torch.full_like(idx, empty), idx)
        sig = exponential_shift(logit_normal_sigmas(b, gen, dev), mu)
        noise = torch.randn(z.shape, generator=gen, device=dev)
        s = sig[:, None, None]
        xt = (1 - s) * z + s * noise
        with torch.autocast(**amp), torch.set_grad_enabled(not args.freeze_text):
            pooled = te(clip_ids[cidx]).pooler_output
            enc = te2(t5_ids[cidx])[0]
        with torch.autocast(**amp):
            pred = transformer(
                hidden_states=xt,
                timestep=sig,
                pooled_projections=pooled,
                encoder_hidden_states=enc,
                txt_ids=txt_ids,
                img_ids=img_ids,
                return_dict=False,
            )[0]
        return F.mse_loss(pred.float(), noise - z)

    networks = {"vae": vae, "transformer": transformer, "text_encoder": te, "text_encoder_2": te2}

    def save(tag: str, at: int) -> None:
        meta["saved_at_step"] = at
        meta["saved_tag"] = tag
        with ema.swapped_in():
            save_weights(out, networks, meta, drop=T5_TIED)
        _log(f"saved weights ({tag}, step {at}) to {out}")

    midway_saved = False

    def midway_checkpoint(step: int, total: int | None) -> None:
        nonlocal midway_saved
        if not midway_saved and total is not None and step >= total // 2:
            meta["steps"] = total
            save("midway", step)
            midway_saved = True

    flow_log = FlowLogging(log, _log, args.log_every, args.log_every * 10, smoothing=(0.9, 0.1),
                           smooth_on=lambda step: step % args.log_every == 0 or step < 20, ms_format=".1f")  # fmt: skip
    flow = run_flow_stage(args, t_start, lambda: forward_loss(*sampler.next(bs)), opt, params, ema, flow_log,
                          timed=(10, 40), after_step=midway_checkpoint)  # fmt: skip
    flow.record(meta, t_start)
    step = flow.steps
    save("final", step)

    if args.eval_heldout:
        ema.copy_to_params()
        meta["eval"] = evaluate(comps, dev, args.eval_heldout)
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
    log.close()
    _log(
        f"done in {time.time() - t_start:.0f} s: {json.dumps({k: meta.get(k) for k in ('vae_steps', 'steps', 'eval')})}"
    )
    return meta


@torch.no_grad()
def evaluate(comps: dict[str, Any], dev: torch.device, n: int, batch: int = 64) -> dict[str, Any]:
    """Sample ``n`` held-out captions at 50 steps (seed i for caption i) and score adherence."""
    from lesa_embedded.flux.adherence import score_adherence

    for k in NETWORKS:
        comps[k].eval()
    pipe = make_pipeline(comps)
    pipe.set_progress_bar_config(disable=True)
    caps = shapes.heldout_captions()[:n]
    res: dict[str, Any] = {"n": len(caps)}
    for name, kw in {"plain": {}, "cfg2": {"true_cfg_scale": 2.0, "negative_prompt": ""}}.items():
        t0 = time.time()
        imgs = []
        for i in range(0, len(caps), batch):
            chunk = caps[i : i + batch]
            gens = [torch.Generator(device=dev).manual_seed(i + j) for j in range(len(chunk))]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                im = pipe(
                    prompt=chunk,
                    height=shapes.IMAGE_SIZE,
                    width=shapes.IMAGE_SIZE,
                    num_inference_steps=50,
                    max_sequence_length=TEXT_TOKENS,
                    generator=gens,
                    output_type="pt",
                    **kw,
                ).images
            imgs.append(im.float().cpu())
        r = score_adherence(torch.cat(imgs), caps)
        res[name] = {
            "adherence": r.rate,
            "attributes": r.attribute_rates(),
            "seconds": round(time.time() - t0, 1),
        }
        _log(f"eval {name}: adherence {r.rate:.3f} {r.attribute_rates()}")
    return res


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
