"""Train the HunyuanVideo-class embedded model: VAE first, then transformer + both text encoders.

::

    python -m tools.embedded.video.build skeleton --out SKELETON
    nice -n 10 python -m tools.embedded.video.train --skeleton SKELETON --out WEIGHTS --budget-seconds 1800
    python -m tools.embedded.video.build assemble --skeleton SKELETON --weights WEIGHTS --out PIPELINE

Stage 1 (VAE, ``--vae-fraction`` of the budget): ``AutoencoderKLHunyuanVideo`` on random 5-frame
windows of the training videos (1 + 4 frames: one causal latent frame plus one compressed group, half
the cost of 9 frames; the causal convolutions see the same local motion), decoding the posterior mean
(sampled latents let the decoder learn the mean image first: 330 steps ended at 19.5 dB), loss
``w``-weighted L1 + MSE + 1e-6 · KL with ``w = 1 + 5 |x − background|`` (the shape's pixels, ~5 % of
the frame, count more).
Then the VAE's ``scaling_factor`` is set to 1 / std of the posterior means of 512 training videos
(the pipeline divides latents by it before decoding; HunyuanVideo has no latent shift).

Stage 2 (the rest): rectified flow on the scaled latents ``(8, 3, 8, 8)`` (192 tokens) of a bank of
``--latent-bank`` jittered training videos encoded once: ``x_σ = (1 − σ)·x0 + σ·ε``, target ``ε − x0``
(MSE), ``σ`` logit-normal(0, 1) pushed through the scheduler's static shift (5), the timestep passed
as ``1000 σ`` as the pipeline does.  Text exactly as ``HunyuanVideoPipeline.encode_prompt``: the Llama
prompt template padded to ``crop_start + 16`` tokens, the third-last hidden state, the template prefix
cropped, the mask kept; CLIP's pooled output over 77 tokens.  10 % of captions are replaced by ``""``
(true CFG with ``negative_prompt=""``).  AdamW, warm-up + cosine, clip 1.0; the EMA of the weights is
written every ``--save-every`` steps (``--init-from`` a weights folder resumes from it) and at the end.

Budget: with ``--budget-seconds`` the step counts are fixed after timing the first steps and logged;
``--vae-steps N --steps M`` replays a run.  Seeds fix networks, data and noise.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lesa_embedded.video import motions

from ..common.cli import training_parser
from ..common.latents import bank_loss, encode_bank
from ..common.loop import FlowLogging, run_flow_stage
from ..common.optim import Ema, adamw, clipped_step, set_lr
from ..common.runlog import console_log, open_run
from ..common.schedule import StepBudget, logit_normal_sigmas, lr_at, static_shift
from ..common.weights import load_networks, read_meta, save_weights
from .build import MAX_SEQUENCE_LENGTH, NETWORKS, crop_start, load_skeleton

VAE_WINDOW = 5  # frames per VAE training clip

_log = console_log("train-video")


class TextBatch:
    """Token ids of every training caption and ``""``, made once, exactly as the pipeline makes them."""

    def __init__(self, tokenizer, tokenizer_2, captions: list[str], device: torch.device):
        from .build import TEMPLATE

        self.crop = crop_start(tokenizer)
        llama = tokenizer(
            [TEMPLATE.format(c) for c in captions],
            max_length=MAX_SEQUENCE_LENGTH + self.crop,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        )
        clip = tokenizer_2(
            captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        )
        self.ids, self.mask = llama.input_ids.to(device), llama.attention_mask.to(device)
        self.clip_ids = clip.input_ids.to(device)

    def embeds(self, te, te2, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Llama embeddings after the crop, their mask, CLIP pooled) for caption rows ``rows``."""
        ids, mask = self.ids[rows], self.mask[rows]
        hidden = te(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-3]
        pooled = te2(self.clip_ids[rows], output_hidden_states=False).pooler_output
        return hidden[:, self.crop :], mask[:, self.crop :], pooled


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = training_parser(__doc__, budget_seconds=1800.0, vae_fraction=0.25)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--vae-batch-size", type=int, default=8)
    p.add_argument("--latent-bank", type=int, default=4096, help="videos encoded once for stage 2")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--vae-fg-weight", type=float, default=5.0, help="extra loss weight on the shape's pixels")
    p.add_argument(
        "--vae-motion-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the pixels that differ from the clip's first frame",
    )
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--init-from", default=None, help="weights folder to start from (its VAE is kept frozen)")
    p.add_argument(
        "--continue-vae",
        action="store_true",
        help="with --init-from: train the loaded VAE further (--vae-steps) before stage 2",
    )
    p.add_argument(
        "--vae-window", type=int, default=VAE_WINDOW, help="frames per VAE clip (1: single frames)"
    )
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--save-every", type=int, default=400)
    p.add_argument("--log-every", type=int, default=25)
    args = p.parse_args(argv)

    t_start = time.time()
    dev = torch.device(args.device)
    out, log, comps = open_run(args, load_skeleton)
    vae, transformer = comps["vae"].to(dev), comps["transformer"].to(dev)
    te, te2 = comps["text_encoder"].to(dev), comps["text_encoder_2"].to(dev)
    n_params = {k: sum(q.numel() for q in comps[k].parameters()) for k in NETWORKS}
    _log(f"device {dev}, params {n_params}, batch {args.batch_size}/{args.vae_batch_size}")
    meta: dict[str, Any] = {"args": vars(args), "params": n_params, "device": str(dev)}
    sampler = motions.TrainSampler("train", seed=args.seed, device=dev)
    shift = float(comps["scheduler"].config.shift)

    # ---------------------------------------------------------------- stage 1: VAE
    init: dict[str, Any] = {}
    if args.init_from:
        src = Path(args.init_from)
        init = read_meta(src)
        load_networks(comps, src, NETWORKS, only_present=True)
        meta["init_from"] = {
            "folder": str(src),
            "vae_steps": init.get("vae_steps"),
            "steps": init.get("steps"),
        }
        _log(f"initialised from {src} (step {init.get('saved_at_step')})")
    train_vae = not args.init_from or args.continue_vae
    vae_total = args.vae_steps if train_vae else 0
    opt = adamw(vae.parameters(), args.vae_lr)
    bg = (torch.tensor(motions.BACKGROUND, device=dev) * 2 - 1).view(1, 3, 1, 1, 1)
    wgen = torch.Generator().manual_seed(args.seed + 501)
    vae.train()
    t0 = time.time()
    budget = StepBudget(args.budget_seconds * args.vae_fraction, 5, 15)
    step = 0
    while vae_total is None or step < vae_total:
        lr = lr_at(step, vae_total or 10**9, args.vae_lr, 50, floor=1.0 if vae_total is None else 0.1)
        set_lr(opt, lr)
        x, _ = sampler.next(args.vae_batch_size)
        s0 = int(torch.randint(0, motions.NUM_FRAMES - args.vae_window + 1, (1,), generator=wgen))
        x = x[:, :, s0 : s0 + args.vae_window]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.mode()).sample  # deterministic: stage 2 trains on the posterior means
        loss_rec = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        weight = 1 + args.vae_fg_weight * (x - bg).abs().amax(
            1, keepdim=True
        )  # the shape's pixels count more
        # and so do the pixels that change from the clip's first frame (else every frame decodes as the first)
        weight = weight + args.vae_motion_weight * (x - x[:, :, :1]).abs().amax(1, keepdim=True)
        err = rec - x
        loss = (err.abs() * weight).mean() + (err.pow(2) * weight).mean() + 1e-6 * post.kl().mean()
        clipped_step(opt, loss, vae.parameters())
        if step % args.log_every == 0:
            log.stage_row("vae", step, loss_rec.item(), lr, t0)
            if step % (args.log_every * 4) == 0:
                _log(f"vae step {step}/{vae_total} rec {loss_rec.item():.4f}")
        step += 1
        vae_total = budget.settle(step, vae_total, _log, "vae", ".0f")
    meta["vae_steps"] = step + (int(init.get("vae_steps") or 0) if args.init_from else 0)
    meta["vae_steps_this_run"] = step
    meta["vae_seconds"] = round(time.time() - t0, 1)
    vae.eval().requires_grad_(False)

    if not train_vae:
        scaling = float(init["scaling_factor"])
    else:
        with torch.no_grad():
            g = torch.Generator().manual_seed(args.seed + 1000)
            vids, _, _ = motions.sample_batch(512, "train", generator=g, device=dev)
            zs = torch.cat([vae.encode(c * 2 - 1).latent_dist.mode() for c in vids.split(64)])
            scaling = float(1.0 / zs.std())
            _log(f"latents: per-channel mean {[round(v, 2) for v in zs.mean((0, 2, 3, 4)).tolist()]}, "
                 f"std {zs.std():.3f} -> scaling_factor {scaling:.4f}")  # fmt: skip
            with torch.no_grad():  # reconstruction PSNR of the 9-frame videos
                rec = vae.decode(zs[:64]).sample.clamp(-1, 1)
                mse = F.mse_loss((rec + 1) / 2, vids[:64]).item()
            meta["vae_psnr_9frames"] = round(-10 * torch.log10(torch.tensor(mse)).item(), 2)
            _log(f"VAE reconstruction PSNR (9 frames, 64 videos): {meta['vae_psnr_9frames']} dB")
    meta["scaling_factor"] = scaling
    vae.register_to_config(scaling_factor=scaling)
    if train_vae:
        save_weights(out, {"vae": vae}, meta)

    # ---------------------------------------------------------------- stage 2: transformer + text
    text = TextBatch(comps["tokenizer"], comps["tokenizer_2"], [*sampler.captions, ""], dev)
    empty = len(sampler.captions)
    trained = [transformer, te, te2]
    for m in trained:
        m.train()
    params = [q for m in trained for q in m.parameters() if q.requires_grad]
    opt = adamw(params, args.lr)
    ema = Ema(params, args.ema)
    gen = torch.Generator(device=dev).manual_seed(args.seed + 2000 + (init.get("saved_at_step") or 0))

    t0 = time.time()
    bank, bank_caption = encode_bank(
        sampler.next, lambda x0: vae.encode(x0).latent_dist.mode() * scaling, args.latent_bank, 64
    )
    meta["latent_bank"] = len(bank)
    _log(f"latent bank: {tuple(bank.shape)} in {time.time() - t0:.0f} s")
    pick_gen = torch.Generator().manual_seed(args.seed + 3000 + (init.get("saved_at_step") or 0))

    def forward_loss(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        drop = torch.rand(b, generator=gen, device=dev) < args.caption_dropout
        rows = torch.where(drop, torch.full_like(idx, empty), idx)
        sig = static_shift(logit_normal_sigmas(b, gen, dev), shift)
        noise = torch.randn(z.shape, generator=gen, device=dev)
        s = sig.view(b, 1, 1, 1, 1)
        xt = (1 - s) * z + s * noise
        enc, enc_mask, pooled = text.embeds(te, te2, rows)
        pred = transformer(
            hidden_states=xt,
            timestep=sig * 1000,
            encoder_hidden_states=enc,
            encoder_attention_mask=enc_mask,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        return F.mse_loss(pred, noise - z)

    done_before = int(init.get("steps_done", 0)) if args.init_from else 0

    def save(tag: str, at: int) -> None:
        meta.update(saved_at_step=at, saved_tag=tag, steps_done=done_before + at)
        with ema.swapped_in():
            save_weights(
                out, {"vae": vae, "transformer": transformer, "text_encoder": te, "text_encoder_2": te2}, meta
            )
        _log(f"saved EMA weights ({tag}, step {at}) to {out}")

    def checkpoint(step: int, total: int | None) -> None:
        if step % args.save_every == 0 and (total is None or step < total):
            meta["steps"] = total
            save("checkpoint", step)

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
