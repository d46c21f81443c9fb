"""Train the Qwen-Image-class embedded model: VAE first, then transformer + text encoder jointly.

::

    python -m tools.embedded.qwen.build skeleton --out SKELETON
    nice -n 10 python -m tools.embedded.qwen.train --skeleton SKELETON --out WEIGHTS --budget-seconds 1800
    python -m tools.embedded.qwen.build assemble --skeleton SKELETON --weights WEIGHTS --out PIPELINE

Stage 1 (VAE, ``--vae-fraction`` of the budget): ``AutoencoderKLQwenImage`` (one-frame videos) on
two-object images in [-1, 1], loss L1 + MSE + 1e-6 · KL.  Then per-channel latent mean/std of 1,024
training images become the VAE's ``latents_mean``/``latents_std`` (the pipeline undoes them).

Stage 2 (the rest): rectified flow on the packed, normalised latents (10 × 10 = 100 image tokens)
of a bank of ``--latent-bank`` jittered training images encoded once (on a CPU the VAE encoder would
otherwise cost a quarter of every step):
``x_σ = (1 − σ)·x0 + σ·ε`` (x0: the posterior mean, which the latent statistics describe), target ``ε − x0`` (MSE), ``σ`` logit-normal(0, 1) pushed through the
scheduler's exponential shift at 100 tokens (the shift the pipeline samples with).  Text: exactly as
``QwenImagePipeline._get_qwen_prompt_embeds``: the prompt template, the text encoder's last hidden
state, the 34 template tokens dropped, padded positions zeroed and masked.  10 % of captions are
replaced by ``""`` (true CFG with ``negative_prompt=""``).  AdamW, warm-up + cosine, clip 1.0; the EMA
of the weights is saved at 50 % and 75 % of the steps (also kept in ``at-50/``, ``at-75/``) and at the end.

Budget: with ``--budget-seconds`` the step counts are fixed after timing the first steps and logged;
``--vae-steps N --steps M`` replays a run.  Seeds fix networks, data and noise.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lesa_embedded.qwen import pairs

from ..common.cli import training_parser
from ..common.latents import bank_loss, encode_bank
from ..common.loop import FlowLogging, run_flow_stage
from ..common.optim import Ema, adamw, clipped_step, set_lr
from ..common.runlog import console_log, open_run
from ..common.schedule import StepBudget, exponential_shift, logit_normal_sigmas, lr_at, scheduler_mu
from ..common.weights import load_network, read_meta
from ..common.weights import save_weights as _save_weights
from .build import LM_HEAD_TIED, NETWORKS, PROMPT_TEMPLATE_PREFIX_TOKENS, load_skeleton, make_pipeline

_log = console_log("train-qwen")


def save_weights(out: Path, modules: dict[str, torch.nn.Module], meta: dict[str, Any]) -> None:
    """fp16 safetensors per network + ``meta.json``; the LM head is tied to the token embeddings."""
    _save_weights(out, modules, meta, drop=LM_HEAD_TIED)


def tokenize(pipe, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Template-wrapped token ids and attention mask, exactly as ``QwenImagePipeline`` makes them."""
    txt = [pipe.prompt_template_encode.format(c) for c in captions]
    t = pipe.tokenizer(txt, padding=True, truncation=True, return_tensors="pt")
    return t.input_ids, t.attention_mask


def prompt_embeds(te, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pipeline's prompt embeddings for a batch: last hidden state, template dropped, pads zeroed."""
    hidden = te(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    drop = PROMPT_TEMPLATE_PREFIX_TOKENS
    hidden, m = hidden[:, drop:], mask[:, drop:]
    n = int(m.sum(1).max())
    # right padding: a prompt's valid tokens come first, as after the pipeline's extract-and-pad
    return hidden[:, :n] * m[:, :n, None].to(hidden.dtype), m[:, :n]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = training_parser(__doc__, budget_seconds=1800.0, vae_fraction=0.12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vae-batch-size", type=int, default=16)
    p.add_argument(
        "--latent-bank",
        type=int,
        default=16384,
        help="encode this many jittered training images once and train the transformer on them",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--train-mu", type=float, default=None, help="σ shift μ (default: the scheduler's)")
    p.add_argument("--init-from", default=None, help="weights folder whose VAE to reuse (skips stage 1)")
    p.add_argument(
        "--continue-vae",
        action="store_true",
        help="with --init-from: train the loaded VAE further (--vae-steps) instead of skipping stage 1",
    )
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)

    t_start = time.time()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out, log, comps = open_run(args, load_skeleton)
    vae, transformer, te = comps["vae"].to(dev), comps["transformer"].to(dev), comps["text_encoder"].to(dev)
    pipe = make_pipeline(comps)
    n_params = {k: sum(q.numel() for q in comps[k].parameters()) for k in NETWORKS}
    _log(f"device {dev}, params {n_params}, batch {args.batch_size}/{args.vae_batch_size}")
    meta: dict[str, Any] = {"args": vars(args), "params": n_params, "device": str(dev)}
    sampler = pairs.TrainSampler("train", seed=args.seed, device=dev)

    # ---------------------------------------------------------------- stage 1: VAE
    init_vae = False
    if args.init_from:
        src = Path(args.init_from)
        load_network(vae, src / "vae.safetensors")
        init_meta = read_meta(src)
        init_vae = not args.continue_vae
        meta["vae_init_from"] = {"folder": str(src), "vae_steps": init_meta.get("vae_steps"),
                                 "continued": args.continue_vae}  # fmt: skip
        _log(f"VAE from {src}" + (", trained further" if args.continue_vae else ""))
    vae_total = 0 if init_vae else args.vae_steps
    opt = adamw(vae.parameters(), args.vae_lr)
    vgen = torch.Generator(device=dev).manual_seed(args.seed + 500)
    vae.train()
    t0 = time.time()
    budget = StepBudget(args.budget_seconds * args.vae_fraction, 5, 15)
    step = 0
    while vae_total is None or step < vae_total:
        lr = lr_at(step, vae_total or 10**9, args.vae_lr, 50, floor=1.0 if vae_total is None else 0.1)
        set_lr(opt, lr)
        x, _ = sampler.next(args.vae_batch_size)
        x = x[:, :, None]  # one-frame video
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=vgen)).sample
        loss_rec = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        clipped_step(opt, loss_rec + 1e-6 * post.kl().mean(), vae.parameters())
        if step % args.log_every == 0:
            log.stage_row("vae", step, loss_rec.item(), lr, t0)
            if step % (args.log_every * 4) == 0:
                _log(f"vae step {step}/{vae_total} rec {loss_rec.item():.4f}")
        step += 1
        vae_total = budget.settle(step, vae_total, _log, "vae", ".0f")
    meta["vae_steps"] = step
    meta["vae_seconds"] = round(time.time() - t0, 1)
    vae.eval().requires_grad_(False)

    with torch.no_grad():
        g = torch.Generator().manual_seed(args.seed + 1000)
        imgs, _, _ = pairs.sample_batch(1024, "train", generator=g, device=dev)
        zs = torch.cat([vae.encode((c * 2 - 1)[:, :, None]).latent_dist.mode() for c in imgs.split(128)])
    if init_vae:
        mean, std = init_meta["latents_mean"], init_meta["latents_std"]
    else:
        mean, std = zs.mean((0, 2, 3, 4)).tolist(), zs.std((0, 2, 3, 4)).tolist()
    meta.update(latents_mean=mean, latents_std=std)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    _log(f"latents: mean {[round(v, 3) for v in mean]} std {[round(v, 3) for v in std]}")
    if not init_vae:
        save_weights(out, {"vae": vae}, meta)
    mean_t = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=dev).view(1, -1, 1, 1)

    # ---------------------------------------------------------------- stage 2: transformer + text
    ids, mask = tokenize(pipe, [*sampler.captions, ""])
    ids, mask = ids.to(dev), mask.to(dev)
    empty = len(sampler.captions)
    lat = pairs.IMAGE_SIZE // pipe.vae_scale_factor
    img_shapes = [[(1, lat // 2, lat // 2)]] * args.batch_size
    mu = scheduler_mu(comps["scheduler"], (lat // 2) ** 2) if args.train_mu is None else args.train_mu
    meta["train_mu"] = mu
    trained = [transformer, te]
    for m in trained:
        m.train()
    params = [q for m in trained for q in m.parameters() if q.requires_grad]
    opt = adamw(params, args.lr)
    ema = Ema(params, args.ema)
    gen = torch.Generator(device=dev).manual_seed(args.seed + 2000)

    # the latent bank: every image the transformer sees is one of these (fresh jitter for each)
    t0 = time.time()
    bank, bank_caption = encode_bank(
        sampler.next,
        lambda x0: (vae.encode(x0[:, :, None]).latent_dist.mode()[:, :, 0] - mean_t) / std_t,
        args.latent_bank,
        256,
    )
    meta["latent_bank"] = len(bank)
    _log(f"latent bank: {tuple(bank.shape)} in {time.time() - t0:.0f} s")
    pick_gen = torch.Generator().manual_seed(args.seed + 3000)

    def forward_loss(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        z = pipe._pack_latents(z, b, z.shape[1], lat, lat)
        drop = torch.rand(b, generator=gen, device=dev) < args.caption_dropout
        cidx = torch.where(drop, torch.full_like(idx, empty), idx)
        sig = exponential_shift(logit_normal_sigmas(b, gen, dev), mu)
        noise = torch.randn(z.shape, generator=gen, device=dev)
        s = sig[:, None, None]
        xt = (1 - s) * z + s * noise
        enc, enc_mask = prompt_embeds(te, ids[cidx], mask[cidx])
        pred = transformer(
            hidden_states=xt,
            timestep=sig,
            encoder_hidden_states=enc,
            encoder_hidden_states_mask=enc_mask,
            img_shapes=img_shapes[:b],
            return_dict=False,
        )[0]
        return F.mse_loss(pred, noise - z)

    def save(tag: str, at: int) -> None:
        meta.update(saved_at_step=at, saved_tag=tag)
        with ema.swapped_in():
            save_weights(out, {"vae": vae, "transformer": transformer, "text_encoder": te}, meta)
        _log(f"saved weights ({tag}, step {at}) to {out}")

    checkpoints: set[float] = set()

    def checkpoint(step: int, total: int | None) -> None:
        if total is None:
            return
        for frac in (0.5, 0.75):
            if step == int(total * frac) and frac not in checkpoints:
                meta["steps"] = total
                save(f"at {frac:.0%}", step)
                keep = out / f"at-{round(frac * 100)}"  # kept: the final save overwrites `out`
                keep.mkdir(exist_ok=True)
                for f in [*out.glob("*.safetensors"), out / "meta.json"]:
                    shutil.copy2(f, keep / f.name)
                checkpoints.add(frac)

    step_loss = bank_loss(bank, bank_caption, args.batch_size, pick_gen, dev, forward_loss)
    flow_log = FlowLogging(log, _log, args.log_every, args.log_every * 8, smoothing=(0.98, 0.02))
    flow = run_flow_stage(args, t_start, step_loss, opt, params, ema, flow_log, after_step=checkpoint)
    flow.record(meta, t_start)
    save("final", flow.steps)
    log.close()
    _log(f"done in {time.time() - t_start:.0f} s: vae_steps {meta['vae_steps']}, steps {meta['steps']}")
    return meta


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
