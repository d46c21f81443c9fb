"""Measure the Qwen-Image-class embedded model: adherence, a sample grid, the trajectory, Taylor vs reuse.

::

    python -m tools.embedded.qwen.evaluate --n 54 --json /tmp/qwen-eval.json \\
        --grid docs/img/embedded-qwen-samples.png --trajectory docs/img/embedded-qwen-trajectory.png \\
        --peers 16

* Adherence: ``n`` held-out captions (spread evenly over the 54; with ``n`` > 54 each caption again
  with the next seeds), seed ``i`` for image ``i``, ``QWEN_CALL_DEFAULTS`` (50 steps, true CFG 4, full
  compute), scored per object by :func:`lesa_embedded.qwen.adherence.score_adherence`.
* Trajectory: a forward hook on the last ``transformer_blocks`` block records its image-token output
  (the ``hidden`` tap) at every step; per step the relative change and cosine similarity to the
  previous step, averaged over prompts, for the cond and the uncond pass.
* Peers (``--peers P``): full compute, reuse (Taylor order 0), TaylorSeer-1 and -2 at N = 7 (E = 3,
  the demo's policy) on P held-out captions through :func:`lesa_workflows.evaluate.evaluate` (the
  code ``lesa demo`` measures with); ``--peer-settings`` adds the same at other step counts, shifts
  and guidance scales (the "what makes Taylor beat reuse" study of docs/embedded-model.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.qwen import QWEN_CALL_DEFAULTS, QWEN_PIPELINE_DIR, heldout_prompts
from lesa_embedded.qwen.adherence import score_adherence

from ..common import plotting, sampling
from ..common.family import family_table as run_family_table
from ..common.family import run_methods, taylor_method
from ..common.trajectory import stage_means

MODEL = sampling.HeldoutSampling("QwenImagePipeline", QWEN_CALL_DEFAULTS, heldout_prompts, batch=16)
load, captions_and_seeds, sample = MODEL.load, MODEL.captions_and_seeds, MODEL.sample


def trajectory(pipe, prompts: list[str], steps: int = 50) -> dict[str, list[float]]:
    """Per-step relative change and cosine similarity of the ``hidden`` tap (the last block's image-token
    output; the block returns (encoder_hidden_states, hidden_states)), averaged over prompts."""
    return MODEL.trajectory(pipe, prompts, pipe.transformer.transformer_blocks[-1], lambda out: out[1], steps)


def peers(
    pipe, n: int, steps: int = 50, interval: int = 7, warmup: int = 3, tap: str = "normed", **call: Any
) -> dict[str, Any]:
    """full / reuse / taylor1 / taylor2 at interval ``interval``: PSNR, SSIM, paired Δ taylor1 − reuse."""
    caps = heldout_prompts(n)
    policy = {"name": "interval", "interval": interval, "warmup": warmup}
    methods: dict[str, Any] = {"full": None}
    for order, name in ((0, "reuse"), (1, "taylor1"), (2, "taylor2")):
        methods[name] = taylor_method(policy, tap, order)
    t0 = time.time()
    results = run_methods(pipe, methods, caps, {**QWEN_CALL_DEFAULTS, **call}, tap, steps=steps)
    by = {r.name: r for r in results}
    finite = [
        (a, b) for a, b in zip(by["taylor1"].psnr_per_image, by["reuse"].psnr_per_image, strict=True)
        if math.isfinite(a) and math.isfinite(b)
    ]  # fmt: skip
    d = torch.tensor([a - b for a, b in finite])
    return {
        "steps": steps,
        "interval": interval,
        "call": {k: v for k, v in call.items()},
        "n": len(caps),
        "full_passes": {r.name: r.full_passes for r in results},
        "psnr": {r.name: round(r.psnr, 2) for r in results if r.name != "full"},
        "ssim": {r.name: round(r.ssim, 4) for r in results if r.name != "full"},
        "taylor1_minus_reuse": round(float(d.mean()), 2),
        "taylor1_minus_reuse_se": round(float(d.std() / math.sqrt(len(d))), 2) if len(d) > 1 else None,
        "seconds": round(time.time() - t0, 1),
    }


def family_table(
    pipe, lesa_bundle: str, mlp_bundle: str, n: int = 54, tap: str = "normed", warmup: int = 3
) -> dict[str, Any]:
    """The per-family results table: full, lesa, mlp, taylor1, taylor2, reuse at N = 7 and N = 10 on ``n``
    held-out captions (seeds 10000 + i): PSNR / SSIM against full compute, paired Δ PSNR ± s.e. vs lesa."""
    caps = heldout_prompts(n)
    rows, _, seconds = run_family_table(pipe, caps, lesa_bundle, mlp_bundle, QWEN_CALL_DEFAULTS, tap, warmup)
    return {"n": len(caps), "rows": rows, "seconds": round(seconds, 1)}


def plot_grid(images: torch.Tensor, captions: list[str], path: str | Path, cols: int = 4) -> None:
    plt = plotting.pyplot()
    res = score_adherence(images, captions)
    rows = (len(captions) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.7))
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, cap) in enumerate(zip(axes.flat, captions, strict=False)):
        ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        words = cap.split()
        cut = 3 if words[3] == "above" else 4
        ok = bool(res.match[i])
        ax.set_title(("✓ " if ok else "✗ ") + " ".join(words[:cut]) + "\n" + " ".join(words[cut:]), fontsize=7,
                     color="black" if ok else "red")  # fmt: skip
    fig.suptitle(
        "Qwen-Image-class model: held-out captions, 50 steps, true CFG 4 (✓ = scorer match)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectory(traj: dict[str, list[float]], path: str | Path, n_prompts: int) -> None:
    plotting.plot_trajectory(
        traj,
        path,
        title=f"Qwen-Image-class: 'hidden' tap (last block, image tokens), mean over {n_prompts} prompts",
        rel_label="relative change (cond)",
        cos_label="cosine(h_s, h_{s−1}) (cond)",
        xlabel="denoising step s (50-step FlowMatchEuler schedule)",
        ylabel="relative change ||h_s − h_{s−1}|| / ||h_{s−1}||",
        ylabel_fontsize=8,
    )


PEER_SETTINGS: dict[str, dict[str, Any]] = {
    "50 steps, CFG 4 (defaults)": {},
    "50 steps, CFG 4, N = 10": {"interval": 10},
    "50 steps, no CFG": {"true_cfg_scale": 1.0, "negative_prompt": None},
    "50 steps, CFG 2": {"true_cfg_scale": 2.0},
    "30 steps, CFG 4": {"steps": 30},
    "50 steps, CFG 4, sampling shift mu = 0 (none)": {"mu": 0.0},
    "50 steps, CFG 4, sampling shift mu = 2": {"mu": 2.0},
}


def with_shift(pipe, mu: float | None):
    """``pipe`` with its scheduler's dynamic shift fixed to ``mu`` (None: unchanged); returns the old one."""
    old = pipe.scheduler
    if mu is not None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(old.config, base_shift=mu, max_shift=mu)
    return old


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default=str(QWEN_PIPELINE_DIR))
    p.add_argument("--n", type=int, default=54, help="held-out images to score (0 = skip)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--also-no-cfg", action="store_true")
    p.add_argument("--grid", default=None)
    p.add_argument("--grid-n", type=int, default=16)
    p.add_argument("--trajectory", default=None)
    p.add_argument("--trajectory-prompts", type=int, default=8)
    p.add_argument("--peers", type=int, default=0, help="held-out captions for full/reuse/taylor1/taylor2")
    p.add_argument("--peer-settings", action="store_true", help="also at other steps / guidance")
    p.add_argument("--family-table", nargs=2, metavar=("LESA_BUNDLE", "MLP_BUNDLE"), default=None,
                   help="the per-family results table with these trained bundles (e.g. a demo's)")  # fmt: skip
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    pipe = load(args.pipeline)
    res: dict[str, Any] = {"pipeline": args.pipeline, "threads": torch.get_num_threads()}
    if args.n:
        caps, seeds = captions_and_seeds(args.n)
        t0 = time.time()
        imgs = sample(pipe, caps, seeds, batch=args.batch)
        r = score_adherence(imgs, caps)
        res["adherence"] = {"n": len(caps), "rate": r.rate, "attributes": r.attribute_rates(),
                            "seconds": round(time.time() - t0, 1)}  # fmt: skip
        print(f"held-out adherence ({len(caps)} images): {r.rate:.3f} {r.attribute_rates()}", flush=True)
        if args.also_no_cfg:
            rc = score_adherence(sample(pipe, caps, seeds, batch=args.batch, true_cfg_scale=1.0,
                                        negative_prompt=None), caps)  # fmt: skip
            res["adherence_no_cfg"] = {"rate": rc.rate, "attributes": rc.attribute_rates()}
            print(f"  without true CFG: {rc.rate:.3f} {rc.attribute_rates()}", flush=True)
        if args.grid:
            pick = [(i * len(caps)) // args.grid_n for i in range(min(args.grid_n, len(caps)))]
            plot_grid(imgs[pick], [caps[i] for i in pick], args.grid)
    if args.trajectory:
        caps = heldout_prompts(args.trajectory_prompts)
        traj = trajectory(pipe, caps)
        res["trajectory"] = traj
        res["trajectory_stage_means"] = stage_means(traj)
        plot_trajectory(traj, args.trajectory, len(caps))
        print(f"hidden-tap relative change per stage: {res['trajectory_stage_means']}", flush=True)
    if args.peers:
        settings = PEER_SETTINGS if args.peer_settings else {"50 steps, CFG 4 (defaults)": {}}
        res["peers"] = {}
        for label, s in settings.items():
            s = dict(s)
            old = with_shift(pipe, s.pop("mu", None))
            try:
                r = peers(pipe, args.peers, steps=s.pop("steps", 50), interval=s.pop("interval", 7), **s)
            finally:
                pipe.scheduler = old
            res["peers"][label] = r
            print(f"peers, {label}: {json.dumps(r)}", flush=True)
    if args.family_table:
        res["family_table"] = family_table(pipe, *args.family_table, n=args.peers or 54)
        print(f"family table: {json.dumps(res['family_table'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
