"""Measure the HunyuanVideo-class embedded model: adherence, frame strips, the trajectory, the family table.

::

    python -m tools.embedded.video.evaluate --n 32 --json /tmp/video-eval.json \\
        --strips docs/img/embedded-video-samples.png --trajectory docs/img/embedded-video-trajectory.png \\
        --family-table DEMO_OUT/bundles/lesa DEMO_OUT/bundles/mlp --peers 16

* Adherence: ``n`` held-out videos (the 16 held-out captions, cycled with new seeds when ``n`` > 16),
  seed ``i`` for video ``i``, ``VIDEO_CALL_DEFAULTS`` (50 steps, true CFG 1.5, full compute), scored per
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
import time
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.video import VIDEO_CALL_DEFAULTS, VIDEO_PIPELINE_DIR, heldout_prompts
from lesa_embedded.video.adherence import score_adherence

from ..common import plotting, sampling
from ..common.family import family_table as run_family_table
from ..common.family import paired_delta
from ..common.trajectory import stage_means

#: ``sample`` gives videos ``(B, F, 3, H, W)`` in [0, 1].
MODEL = sampling.HeldoutSampling(
    "HunyuanVideoPipeline", VIDEO_CALL_DEFAULTS, heldout_prompts, "frames", batch=8
)
load, captions_and_seeds, sample = MODEL.load, MODEL.captions_and_seeds, MODEL.sample


def trajectory(pipe, prompts: list[str], steps: int = 50) -> dict[str, list[float]]:
    """Per-step relative change and cosine similarity of the ``output`` tap, averaged over prompts."""
    return MODEL.trajectory(pipe, prompts, pipe.transformer, lambda out: out[0], steps)


def family_table(
    pipe, lesa_bundle: str, mlp_bundle: str, n: int = 16, tap: str = "output", warmup: int = 3
) -> dict[str, Any]:
    """The per-family results table (module docstring)."""
    caps = [heldout_prompts()[i % 16] for i in range(n)]

    def per_video(r: Any) -> dict[str, Any]:
        adherence = score_adherence(r.images, caps).match.float().mean().item()
        return {"adherence": round(adherence, 3), "psnr_per_frame": [round(v, 2) for v in r.psnr_per_frame]}

    rows, by, seconds = run_family_table(
        pipe, caps, lesa_bundle, mlp_bundle, VIDEO_CALL_DEFAULTS, tap, warmup, extra_row=per_video
    )
    for interval in (7, 10):
        t1, r0 = by[f"taylor1@N{interval}"], by[f"reuse@N{interval}"]
        mean, se = paired_delta(t1.psnr_per_image, r0.psnr_per_image, finite_only=False)
        rows[f"taylor1_minus_reuse@N{interval}"] = {"delta": round(mean, 2), "se": round(se, 2)}
    return {"n": len(caps), "rows": rows, "seconds": round(seconds, 1)}


def plot_strips(videos: torch.Tensor, captions: list[str], path: str | Path) -> None:
    """Frames side by side, one row per caption, marked with the scorer's verdict."""
    plt = plotting.pyplot()
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
    cfg = VIDEO_CALL_DEFAULTS["true_cfg_scale"]
    fig.suptitle(
        f"HunyuanVideo-class model: held-out captions, 9 frames, 50 steps, true CFG {cfg:g}", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectory(traj: dict[str, list[float]], path: str | Path, n_prompts: int) -> None:
    plotting.plot_trajectory(
        traj,
        path,
        title=f"HunyuanVideo-class: 'output' tap (the velocity), mean over {n_prompts} prompts",
        rel_label="relative change (cond)",
        cos_label="cosine(v_s, v_{s−1}) (cond)",
        xlabel="denoising step s (50-step FlowMatchEuler schedule, shift 5)",
        ylabel="relative change ||v_s − v_{s−1}|| / ||v_{s−1}||",
        ylabel_fontsize=8,
    )


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
