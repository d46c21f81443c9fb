"""The step-to-step dynamics of a tapped feature over a sampling run (why LESA splits the trajectory into
stages): relative change and cosine similarity to the previous step, per pass, and per-stage means."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def step_dynamics(feats: list[torch.Tensor], steps: int) -> dict[str, list[float]]:
    """``feats``: the tap recorded at every forward, ``steps`` steps of one or two passes each (true CFG:
    "cond" first, then "uncond").  Per pass, per step, the prompt-mean of ``||h_s − h_{s−1}|| /
    ||h_{s−1}||`` (``rel_change``, uncond: ``uncond_rel_change``) and cosine(h_s, h_{s−1}); step 0 is NaN."""
    out: dict[str, list[float]] = {}
    passes = len(feats) // steps
    for k, name in enumerate(["", "uncond_"][:passes]):
        flat = torch.stack(feats[k::passes]).flatten(2)  # (S, B, everything else)
        diff = (flat[1:] - flat[:-1]).norm(dim=-1) / flat[:-1].norm(dim=-1)
        cos = torch.nn.functional.cosine_similarity(flat[1:], flat[:-1], dim=-1)
        out[name + "rel_change"] = [float("nan"), *diff.mean(1).tolist()]
        out[name + "cosine"] = [float("nan"), *cos.mean(1).tolist()]
    return out


@torch.no_grad()
def record_trajectory(
    pipe: Any,
    module: torch.nn.Module,
    tap: Callable[[Any], torch.Tensor],
    run: Callable[[], Any],
    steps: int,
) -> dict[str, list[float]]:
    """Hook ``module`` (``tap`` picks the feature from its output), ``run()`` a ``steps``-step sampling call,
    remove the hook; ``t``: the schedule's σ at each step, plus :func:`step_dynamics`."""
    feats: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        feats.append(tap(out).detach().float().clone())

    handle = module.register_forward_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return {"t": pipe.scheduler.sigmas[:steps].tolist(), **step_dynamics(feats, steps)}


def stage_means(
    traj: dict[str, list[float]], boundaries: tuple[float, float] = (0.9, 0.5)
) -> dict[str, float]:
    """Mean relative change of the cond pass per LESA stage (t > 0.9, 0.5 < t ≤ 0.9, t ≤ 0.5)."""
    t, rc = traj["t"][1:], traj["rel_change"][1:]
    hi, lo = boundaries
    groups = {
        f"t>{hi}": [r for tt, r in zip(t, rc, strict=True) if tt > hi],
        f"{lo}<t<={hi}": [r for tt, r in zip(t, rc, strict=True) if lo < tt <= hi],
        f"t<={lo}": [r for tt, r in zip(t, rc, strict=True) if tt <= lo],
    }
    return {k: sum(v) / len(v) for k, v in groups.items() if v}
