"""Measure the embedded model: held-out prompt adherence, a sample grid, the hidden-tap trajectory.

::

    python -m tools.embedded.flux.evaluate --n 96 --json /tmp/embedded-eval.json \\
        --grid docs/img/embedded-samples.png --trajectory docs/img/embedded-trajectory.png

* Adherence: ``n`` held-out captions (spread evenly over the 302), seed ``i`` for caption ``i``,
  ``EMBEDDED_CALL_DEFAULTS`` (50 steps, true CFG 4, full compute), scored by
  :func:`lesa_embedded.flux.adherence.score_adherence`.
* Trajectory: a forward hook on the last ``single_transformer_block`` records its image-token
  output (the ``hidden`` tap, before ``norm_out``) at every step; per step ``s`` the relative change
  ``||h_s − h_{s−1}|| / ||h_{s−1}||`` and the cosine similarity of ``h_s`` and ``h_{s−1}`` are
  averaged over ``--trajectory-prompts`` prompts (the cond pass; the uncond pass is reported too).
* Speed: the transformer's forward time (batch 1, 256 image + 32 text tokens), min over repeats.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from lesa_embedded.flux import EMBEDDED_CALL_DEFAULTS, EMBEDDED_PIPELINE_DIR, heldout_prompts
from lesa_embedded.flux.adherence import score_adherence

from ..common import plotting, sampling

MODEL = sampling.HeldoutSampling("FluxPipeline", EMBEDDED_CALL_DEFAULTS, heldout_prompts, batch=16)
load = MODEL.load


def sample(pipe, prompts: list[str], batch: int = 16, seed0: int = 0, **kw: Any) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` in [0, 1], seed ``seed0 + i`` for prompt ``i``, ``EMBEDDED_CALL_DEFAULTS``
    overridden by ``kw``."""
    return MODEL.sample(pipe, prompts, [seed0 + i for i in range(len(prompts))], batch, **kw)


def trajectory(pipe, prompts: list[str], steps: int = 50) -> dict[str, list[float]]:
    """Per-step relative change and cosine similarity of the ``hidden`` tap (the last single block's
    image-token output; the block returns (encoder_hidden_states, hidden_states)), averaged over prompts."""
    block = pipe.transformer.single_transformer_blocks[-1]
    return MODEL.trajectory(pipe, prompts, block, lambda out: out[1], steps)


@torch.no_grad()
def forward_ms(pipe, repeats: int = 20) -> float:
    tr = pipe.transformer
    x = torch.randn(1, 256, tr.config.in_channels)
    enc = torch.randn(1, 32, tr.config.joint_attention_dim)
    pooled = torch.randn(1, tr.config.pooled_projection_dim)
    ids = torch.zeros(16, 16, 3)
    ids[..., 1] = torch.arange(16)[:, None]
    ids[..., 2] = torch.arange(16)[None, :]
    kw = dict(hidden_states=x, encoder_hidden_states=enc, pooled_projections=pooled,
              timestep=torch.tensor([0.5]), img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(32, 3),
              return_dict=False)  # fmt: skip
    times = []
    for _ in range(repeats + 3):
        t0 = time.perf_counter()
        tr(**kw)
        times.append(time.perf_counter() - t0)
    return 1000 * min(times[3:])


def plot_grid(images: torch.Tensor, captions: list[str], path: str | Path, cols: int = 4) -> None:
    plt = plotting.pyplot()
    res = score_adherence(images, captions)
    rows = (len(captions) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.9))
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, cap) in enumerate(zip(axes.flat, captions, strict=False)):
        ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        words = cap.split()
        text = " ".join(words[:5]) + "\n" + " ".join(words[5:])
        ok = bool(res.match[i])
        ax.set_title(("✓ " if ok else "✗ ") + text, fontsize=7, color="black" if ok else "red")
    fig.suptitle(
        "Embedded model: held-out captions, 50 steps, true CFG 4, full compute (✓ = scorer match)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectory(traj: dict[str, list[float]], path: str | Path, n_prompts: int) -> None:
    plotting.plot_trajectory(
        traj,
        path,
        title=f"'hidden' tap (last single block, image tokens), mean over {n_prompts} held-out prompts",
        rel_label="relative change ||h_s − h_{s−1}|| / ||h_{s−1}|| (cond)",
        cos_label="cosine(h_s, h_{s−1}) (cond)",
        xlabel="denoising step s (50-step FlowMatchEuler schedule)",
        ylabel="relative change",
        sigma_axis=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default=str(EMBEDDED_PIPELINE_DIR))
    p.add_argument("--n", type=int, default=96, help="held-out captions to score (0 = skip)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--also-no-cfg", action="store_true", help="also score without true CFG")
    p.add_argument("--grid", default=None)
    p.add_argument("--grid-n", type=int, default=16)
    p.add_argument("--trajectory", default=None)
    p.add_argument("--trajectory-prompts", type=int, default=8)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load(args.pipeline)
    res: dict[str, Any] = {"pipeline": args.pipeline, "threads": torch.get_num_threads()}
    res["transformer_forward_ms"] = round(forward_ms(pipe), 2)
    print(f"transformer forward (1 x 256 image tokens): {res['transformer_forward_ms']} ms", flush=True)
    if args.n:
        caps = heldout_prompts(args.n)
        t0 = time.time()
        imgs = sample(pipe, caps, batch=args.batch)
        r = score_adherence(imgs, caps)
        res["call"] = {k: v for k, v in EMBEDDED_CALL_DEFAULTS.items()}
        res["adherence"] = {"n": len(caps), "rate": r.rate, "attributes": r.attribute_rates(),
                            "seconds": round(time.time() - t0, 1)}  # fmt: skip
        print(
            f"held-out adherence ({len(caps)} captions, 50 steps): {r.rate:.3f} {r.attribute_rates()}",
            flush=True,
        )
        if args.also_no_cfg:
            rc = score_adherence(
                sample(pipe, caps, batch=args.batch, true_cfg_scale=1.0, negative_prompt=None), caps
            )
            res["adherence_no_cfg"] = {"rate": rc.rate, "attributes": rc.attribute_rates()}
            print(f"  without true CFG: {rc.rate:.3f}", flush=True)
    if args.grid:
        if args.n:  # a spread of the images just scored
            pick = [(i * len(caps)) // args.grid_n for i in range(min(args.grid_n, len(caps)))]
            plot_grid(imgs[pick], [caps[i] for i in pick], args.grid)
        else:
            caps = heldout_prompts(args.grid_n)
            plot_grid(sample(pipe, caps, batch=args.batch), caps, args.grid)
    if args.trajectory:
        caps = heldout_prompts(args.trajectory_prompts)
        traj = trajectory(pipe, caps)
        res["trajectory"] = traj
        plot_trajectory(traj, args.trajectory, len(caps))
        rc = traj["rel_change"][1:]
        print(f"hidden-tap relative change: min {min(rc):.4f} max {max(rc):.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
