"""The trajectory figure of the evaluate tools: relative change and cosine per step, the LESA stage
boundaries (t = 0.9, 0.5) marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trajectory(
    traj: dict[str, list[float]],
    path: str | Path,
    *,
    title: str,
    rel_label: str,
    cos_label: str,
    xlabel: str,
    ylabel: str,
    ylabel_fontsize: float | None = None,
    sigma_axis: bool = False,
) -> None:
    """Plot :func:`~.trajectory.record_trajectory`'s output to ``path``: ``rel_change`` (and the uncond
    pass's, dashed) on the left axis, ``cosine`` on the right; ``sigma_axis`` adds σ ticks on top."""
    plt = pyplot()
    t = traj["t"]
    steps = list(range(len(t)))
    fig, ax1 = plt.subplots(figsize=(7.5, 3.8))
    ax1.plot(steps, traj["rel_change"], "o-", ms=3, color="tab:blue", label=rel_label)
    if "uncond_rel_change" in traj:
        ax1.plot(steps, traj["uncond_rel_change"], "--", lw=1, color="tab:blue", alpha=0.6,
                 label="relative change (uncond pass)")  # fmt: skip
    ax1.set_xlabel(xlabel)
    font = {} if ylabel_fontsize is None else {"fontsize": ylabel_fontsize}
    ax1.set_ylabel(ylabel, color="tab:blue", **font)
    ax2 = ax1.twinx()
    ax2.plot(steps, traj["cosine"], "s-", ms=2, color="tab:orange", alpha=0.8, label=cos_label)
    ax2.set_ylabel("cosine similarity", color="tab:orange")
    for thr in (0.9, 0.5):
        s_cross = next((i for i, v in enumerate(t) if v <= thr), None)
        if s_cross is not None:
            ax1.axvline(s_cross - 0.5, color="gray", ls="--", lw=1)
            ax1.text(s_cross - 0.4, ax1.get_ylim()[1] * 0.92, f"t = {thr}", fontsize=8, color="gray")
    if sigma_axis:
        sec = ax1.secondary_xaxis("top", functions=(lambda s: s, lambda s: s))
        ticks = [0, 10, 20, 30, 40, 49]
        sec.set_xticks(ticks)
        sec.set_xticklabels([f"{t[i]:.2f}" for i in ticks])
        sec.set_xlabel("t (σ)", fontsize=8)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    ax1.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
