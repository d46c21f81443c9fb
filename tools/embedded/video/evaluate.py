"""Measure the HunyuanVideo-class embedded model: adherence, frame strips, the trajectory, the family table.

::

    python -m tools.embedded.video.evaluate --n 32 --json /tmp/video-eval.json \\
        --strips docs/img/embedded-video-samples.png --trajectory docs/img/embedded-video-trajectory.png \\
        --family-table DEMO_OUT/bundles/lesa DEMO_OUT/bundles/mlp --peers 16

* Adherence: ``n`` held-out videos (the 16 held-out captions, cycled with new seeds when ``n`` > 16),
  seed ``i`` for video ``i``, ``VIDEO_CALL_DEFAULTS`` (50 steps, true CFG 4, full compute), scored per
  frame and for the motion by :func:`lesa_embedded.video.adherence.score_adherence`.
* Trajectory: a forward hook on the transformer records its output (LESA's HunyuanVideo tap,
  ``output``) at every step; per step the relative change and cosine similarity to the previous step,
  averaged over prompts, for the cond and the uncond pass.
* Family table (``--family-table LESA MLP``): full, lesa, mlp, taylor1, taylor2, reuse at N = 7 and
  N = 10 (E = 3) on ``--peers`` held-out videos (seeds 10000 + i) through
  :func:`lesa_workflows.evaluate.evaluate`: PSNR / SSIM over all frames against full compute, paired
  Δ PSNR ± s.e. against lesa at the same N.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.video import VIDEO_CALL_DEFAULTS, VIDEO_PIPELINE_DIR, heldout_prompts
from lesa_embedded.video.adherence import score_adherence

from ..qwen.evaluate import stage_means


def load(path: str | Path):
    from diffusers import HunyuanVideoPipeline

    pipe = HunyuanVideoPipeline.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    for c in pipe.components.values():
        if isinstance(c, torch.nn.Module):
            c.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def captions_and_seeds(n: int) -> tuple[list[str], list[int]]:
    """``n`` held-out captions (cycling through all 16 when ``n`` > 16) with seeds 0..n-1."""
    caps = heldout_prompts()
    if n <= len(caps):
        return heldout_prompts(n), list(range(n))
    return [caps[i % len(caps)] for i in range(n)], list(range(n))


@torch.no_grad()
def sample(
    pipe, prompts: list[str], seeds: list[int] | None = None, batch: int = 8, **kw: Any
) -> torch.Tensor:
    """Videos ``(B, F, 3, H, W)`` in [0, 1], ``VIDEO_CALL_DEFAULTS`` overridden by ``kw``."""
    call = {**VIDEO_CALL_DEFAULTS, **kw}
    seeds = list(range(len(prompts))) if seeds is None else seeds
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        out.append(pipe(prompts[i : i + batch], generator=gens, output_type="pt", **call).frames.float())
    return torch.cat(out)


@torch.no_grad()
def trajectory(pipe, prompts: list[str], steps: int = 50) -> dict[str, list[float]]:
    """Per-step relative change and cosine similarity of the ``output`` tap, averaged over prompts."""
    feats: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        feats.append(out[0].detach().float().clone())

    h = pipe.transformer.register_forward_hook(hook)
    try:
        sample(pipe, prompts, batch=len(prompts), num_inference_steps=steps)
    finally:
        h.remove()
    out: dict[str, list[float]] = {"t": pipe.scheduler.sigmas[:steps].tolist()}
    passes = len(feats) // steps  # true CFG: "cond" then "uncond" at every step
    for k, name in enumerate(["", "uncond_"][:passes]):
        flat = torch.stack(feats[k::passes]).flatten(2)  # (S, B, C * F * H * W)
        diff = (flat[1:] - flat[:-1]).norm(dim=-1) / flat[:-1].norm(dim=-1)
        cos = torch.nn.functional.cosine_similarity(flat[1:], flat[:-1], dim=-1)
        out[name + "rel_change"] = [float("nan"), *diff.mean(1).tolist()]
        out[name + "cosine"] = [float("nan"), *cos.mean(1).tolist()]
    return out


def family_table(
    pipe, lesa_bundle: str, mlp_bundle: str, n: int = 16, tap: str = "output", warmup: int = 3
) -> dict[str, Any]:
    """The per-family results table (module docstring)."""
    from lesa_workflows.evaluate import evaluate

    caps = [heldout_prompts()[i % 16] for i in range(n)]
    base = {"router": {"name": "threshold", "boundaries": [0.9, 0.5]}, "tap": tap}
    methods: dict[str, Any] = {"full": None}
    for interval in (7, 10):
        policy = {"name": "interval", "interval": interval, "warmup": warmup}
        methods[f"lesa@N{interval}"] = {"bundle": lesa_bundle, "policy": policy}
        methods[f"mlp@N{interval}"] = {"bundle": mlp_bundle, "policy": policy}
        for order, name in ((1, "taylor1"), (2, "taylor2"), (0, "reuse")):
            methods[f"{name}@N{interval}"] = {
                **base,
                "policy": policy,
                "predictor": {"name": "taylor", "order": order},
            }
    kwargs = {k: v for k, v in VIDEO_CALL_DEFAULTS.items() if k != "num_inference_steps"}
    t0 = time.time()
    results = evaluate(pipe, methods, caps, [10_000 + i for i in range(len(caps))], num_steps=50,
                       call_kwargs=kwargs, batch_size=8, show_progress=False, reference_tap=tap)  # fmt: skip
    by = {r.name: r for r in results}
    rows: dict[str, Any] = {}
    for r in results:
        adherence = score_adherence(r.images, caps).match.float().mean().item()
        row: dict[str, Any] = {
            "full_passes": r.full_passes,
            "psnr": round(r.psnr, 2),
            "ssim": round(r.ssim, 4),
            "adherence": round(adherence, 3),
            "psnr_per_frame": [round(v, 2) for v in r.psnr_per_frame],
        }
        interval = r.name.split("@N")[-1]
        ref = by.get(f"lesa@N{interval}")
        if r.name != "full" and ref is not None and ref is not r:
            d = torch.tensor(r.psnr_per_image) - torch.tensor(ref.psnr_per_image)
            d = d[torch.isfinite(d)]
            row["delta_vs_lesa"] = round(float(d.mean()), 2)
            row["delta_se"] = round(float(d.std() / math.sqrt(len(d))), 2)
        rows[r.name] = row
    for interval in (7, 10):
        t1, r0 = by[f"taylor1@N{interval}"], by[f"reuse@N{interval}"]
        d = torch.tensor(t1.psnr_per_image) - torch.tensor(r0.psnr_per_image)
        rows[f"taylor1_minus_reuse@N{interval}"] = {
            "delta": round(float(d.mean()), 2),
            "se": round(float(d.std() / math.sqrt(len(d))), 2),
        }
    return {"n": len(caps), "rows": rows, "seconds": round(time.time() - t0, 1)}


def plot_strips(videos: torch.Tensor, captions: list[str], path: str | Path) -> None:
    """Frames side by side, one row per caption, marked with the scorer's verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = score_adherence(videos, captions)
    rows, frames = videos.shape[0], videos.shape[1]
    fig, axes = plt.subplots(rows, 1, figsize=(frames * 0.9, rows * 1.05))
    for i, ax in enumerate(axes.flat if rows > 1 else [axes]):
        strip = torch.cat(list(videos[i].clamp(0, 1)), dim=-1)  # (3, H, F * W)
        ax.imshow(strip.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.axis("off")
        ok = bool(res.match[i])
        ax.set_title(
            ("✓ " if ok else "✗ ") + captions[i], fontsize=7, color="black" if ok else "red", loc="left"
        )
    fig.suptitle("HunyuanVideo-class model: held-out captions, 9 frames, 50 steps, true CFG 4", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectory(traj: dict[str, list[float]], path: str | Path, n_prompts: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = traj["t"]
    steps = list(range(len(t)))
    fig, ax1 = plt.subplots(figsize=(7.5, 3.8))
    ax1.plot(steps, traj["rel_change"], "o-", ms=3, color="tab:blue", label="relative change (cond)")
    if "uncond_rel_change" in traj:
        ax1.plot(steps, traj["uncond_rel_change"], "--", lw=1, color="tab:blue", alpha=0.6,
                 label="relative change (uncond pass)")  # fmt: skip
    ax1.set_xlabel("denoising step s (50-step FlowMatchEuler schedule, shift 5)")
    ax1.set_ylabel("relative change ||v_s − v_{s−1}|| / ||v_{s−1}||", color="tab:blue", fontsize=8)
    ax2 = ax1.twinx()
    ax2.plot(
        steps, traj["cosine"], "s-", ms=2, color="tab:orange", alpha=0.8, label="cosine(v_s, v_{s−1}) (cond)"
    )
    ax2.set_ylabel("cosine similarity", color="tab:orange")
    for thr in (0.9, 0.5):
        s_cross = next((i for i, v in enumerate(t) if v <= thr), None)
        if s_cross is not None:
            ax1.axvline(s_cross - 0.5, color="gray", ls="--", lw=1)
            ax1.text(s_cross - 0.4, ax1.get_ylim()[1] * 0.92, f"t = {thr}", fontsize=8, color="gray")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    ax1.set_title(
        f"HunyuanVideo-class: 'output' tap (the velocity), mean over {n_prompts} prompts", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default=str(VIDEO_PIPELINE_DIR))
    p.add_argument("--n", type=int, default=32, help="held-out videos to score (0 = skip)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--strips", default=None, help="PNG of frame strips of the first 8 scored videos")
    p.add_argument("--trajectory", default=None)
    p.add_argument("--trajectory-prompts", type=int, default=4)
    p.add_argument("--peers", type=int, default=16, help="held-out videos for the family table")
    p.add_argument("--family-table", nargs=2, metavar=("LESA_BUNDLE", "MLP_BUNDLE"), default=None,
                   help="the per-family results table with these trained bundles (e.g. a demo's)")  # fmt: skip
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    pipe = load(args.pipeline)
    res: dict[str, Any] = {"pipeline": args.pipeline, "threads": torch.get_num_threads()}
    if args.n:
        caps, seeds = captions_and_seeds(args.n)
        t0 = time.time()
        vids = sample(pipe, caps, seeds, batch=args.batch)
        r = score_adherence(vids, caps)
        rates = {k: float(getattr(r, k).float().mean()) for k in ("colour", "shape", "motion", "match")}
        res["adherence"] = {"n": len(caps), **rates, "seconds": round(time.time() - t0, 1),
                            "per_caption": {c: bool(m) for c, m in zip(caps, r.match, strict=True)}}  # fmt: skip
        print(f"held-out adherence ({len(caps)} videos): {rates}", flush=True)
        if args.strips:
            plot_strips(vids[:8], caps[:8], args.strips)
    if args.trajectory:
        caps = heldout_prompts(args.trajectory_prompts)
        traj = trajectory(pipe, caps)
        res["trajectory"] = traj
        res["trajectory_stage_means"] = stage_means(traj)
        plot_trajectory(traj, args.trajectory, len(caps))
        print(f"output-tap relative change per stage: {res['trajectory_stage_means']}", flush=True)
    if args.family_table:
        res["family_table"] = family_table(pipe, *args.family_table, n=args.peers)
        print(f"family table: {json.dumps(res['family_table'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
