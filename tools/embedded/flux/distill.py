"""Guidance-distil the embedded FLUX-class model, as FLUX.1-dev is distilled from a CFG teacher.

::

    python -m tools.embedded.flux.distill --out DISTILLED --budget-seconds 1200

The student is the shipped ``FluxTransformer2DModel`` with a guidance embedding
(``guidance_embeds=True``), initialised from the shipped (teacher) weights; the new guidance
embedder's last layer starts at zero, so the student starts as the teacher's conditional prediction.
Each step draws training images (:mod:`lesa_embedded.flux.shapes`), noises their latents at a σ from the
training schedule (logit-normal pushed through the pipeline's shift), draws a guidance scale
``g ~ U[--g-min, --g-max]`` and regresses the student's velocity at ``(x_σ, σ, caption, g)`` onto the
teacher's true-CFG velocity ``u + g (c − u)`` (the ``FluxPipeline`` combination; ``c``/``u`` the
teacher's conditional / empty-prompt predictions). Text encoders, VAE and teacher stay frozen: only the
transformer changes, so the result is a transformer folder that replaces the shipped one
(``FluxPipeline.from_pretrained(SHIPPED, transformer=...)``), sampled with one transformer call per
step and ``guidance_scale = g`` — the way FLUX.1-dev is used.

Outputs in ``--out``: ``transformer/`` (``save_pretrained``, fp16 safetensors), ``meta.json``
(arguments, steps, seconds, final loss), ``losses.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lesa_embedded.flux import load_embedded_pipeline, shapes

from ..common.optim import adamw, clipped_step, set_lr
from ..common.runlog import console_log
from ..common.schedule import exponential_shift, logit_normal_sigmas, lr_at, scheduler_mu

_log = console_log("distill")


@torch.no_grad()
def encode_captions(pipe: Any, captions: list[str], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pooled (N, D), T5 states (N, T, C))`` for ``captions`` exactly as ``FluxPipeline`` encodes them."""
    pooled, states = [], []
    for i in range(0, len(captions), batch):
        emb, pool, _ = pipe.encode_prompt(captions[i : i + batch], None, max_sequence_length=32)
        pooled.append(pool.float())
        states.append(emb.float())
    return torch.cat(pooled), torch.cat(states)


def make_student(teacher: torch.nn.Module) -> torch.nn.Module:
    """The teacher's architecture with a guidance embedding; teacher weights in, new embedder's output at 0."""
    from diffusers import FluxTransformer2DModel

    config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
    student = FluxTransformer2DModel(**{**config, "guidance_embeds": True})
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any("guidance_embedder" not in k for k in missing):
        raise RuntimeError(f"teacher weights do not fit the student: missing {missing}, unexpected {unexpected}")
    last = student.time_text_embed.guidance_embedder.linear_2
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return student


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-seconds", type=float, default=1200.0, help="training wall clock (step count fixed after 10 steps)")
    ap.add_argument("--steps", type=int, default=None, help="exact step count (overrides the budget)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--g-min", type=float, default=1.0)
    ap.add_argument("--g-max", type=float, default=6.0)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    dev = torch.device(args.device)
    pipe = load_embedded_pipeline(device=dev)
    teacher = pipe.transformer.requires_grad_(False)
    student = make_student(teacher).to(dev).train()
    vae = pipe.vae.requires_grad_(False)
    sampler = shapes.TrainSampler("train", seed=args.seed, device=dev)
    t0 = time.time()
    pooled_all, states_all = encode_captions(pipe, [*sampler.captions, ""])
    empty = len(sampler.captions)
    _log(f"encoded {empty} training captions + the empty prompt in {time.time() - t0:.0f} s")

    from diffusers import FluxPipeline

    lat_hw = shapes.IMAGE_SIZE // 2
    img_ids = FluxPipeline._prepare_latent_image_ids(1, lat_hw // 2, lat_hw // 2, dev, torch.float32)
    txt_ids = torch.zeros(states_all.shape[1], 3, device=dev)
    mu = scheduler_mu(pipe.scheduler, (lat_hw // 2) ** 2)
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    gen = torch.Generator(device=dev).manual_seed(args.seed + 1)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = adamw(params, args.lr)
    ema = [p.detach().clone() for p in params]

    def call(model: torch.nn.Module, xt: torch.Tensor, sig: torch.Tensor, rows: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return model(
            hidden_states=xt, timestep=sig, guidance=g, pooled_projections=pooled_all[rows],
            encoder_hidden_states=states_all[rows], txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
        )[0]

    def step_loss() -> torch.Tensor:
        x0, idx = sampler.next(args.batch)
        b = x0.shape[0]
        with torch.no_grad():
            z = (vae.encode(x0).latent_dist.mode() - shift) * scale
            z = FluxPipeline._pack_latents(z, b, z.shape[1], lat_hw, lat_hw)
            sig = exponential_shift(logit_normal_sigmas(b, gen, dev), mu)
            s = sig[:, None, None]
            xt = (1 - s) * z + s * torch.randn(z.shape, generator=gen, device=dev)
            g = args.g_min + (args.g_max - args.g_min) * torch.rand(b, generator=gen, device=dev)
            both = call(teacher, torch.cat([xt, xt]), torch.cat([sig, sig]), torch.cat([idx, torch.full_like(idx, empty)]), None)
            cond, uncond = both[:b], both[b:]
            target = uncond + g[:, None, None] * (cond - uncond)
        return F.mse_loss(call(student, xt, sig, idx, g), target)

    log = csv.writer((out / "losses.csv").open("w", newline=""))
    log.writerow(["step", "loss", "lr", "seconds"])
    total, step, run = args.steps, 0, None
    t_start = time.time()
    while total is None or step < total:
        lr = lr_at(step, total or 10_000, args.lr, warmup=20)
        set_lr(opt, lr)
        loss = step_loss()
        clipped_step(opt, loss, params)
        with torch.no_grad():
            for e, p in zip(ema, params, strict=True):
                e.lerp_(p.detach(), 1 - args.ema)
        step += 1
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        log.writerow([step, f"{loss.item():.6f}", f"{lr:.3g}", f"{time.time() - t_start:.1f}"])
        if total is None and step == 10:
            per = (time.time() - t_start) / 10
            total = max(20, int(args.budget_seconds / per))
            _log(f"{per:.2f} s/step -> {total} steps")
        if step % 50 == 0:
            _log(f"step {step}/{total} loss {run:.5f} lr {lr:.2e}")
    with torch.no_grad():
        for e, p in zip(ema, params, strict=True):
            p.copy_(e)
    student.eval().to("cpu", torch.float16).save_pretrained(out / "transformer", safe_serialization=True)
    meta = {"args": vars(args), "steps": step, "seconds": round(time.time() - t_start, 1), "final_loss": run, "train_mu": mu}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    _log(f"saved {out / 'transformer'} ({step} steps, {meta['seconds']} s, loss {run:.5f})")
    return meta


if __name__ == "__main__":
    main()
