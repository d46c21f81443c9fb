"""Reports people would rather look at than read: JSON, Markdown, an image grid and plots."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lesa_core.errors import OutputError
from lesa_core.metrics import to_uint8
from lesa_core.outputs import claim_output_folder
from lesa_workflows.evaluate import EvaluatedMethod
from lesa_workflows.video import is_video, save_frame_error_plot, save_frame_strips, still_frames

REPORT_MARKERS = ("report.json",)
"""What marks a folder as holding a report LESA wrote (besides :data:`lesa_core.outputs.OUTPUT_MARKER`)."""


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_grid(path: Path, results: Sequence[EvaluatedMethod], prompts: Sequence[str], *, max_rows: int = 8) -> None:
    """A PNG grid: one row per prompt, one column per method, labelled (a video shows its middle frame)."""
    from PIL import Image, ImageDraw

    rows = min(max_rows, len(prompts))
    first = still_frames(results[0].images)
    h, w = first.shape[-2:]
    scale = max(1, 128 // max(h, w))
    cell_h, cell_w, head, side = h * scale, w * scale, 18, 0
    grid = Image.new("RGB", (side + cell_w * len(results), head + cell_h * rows), "white")
    draw = ImageDraw.Draw(grid)
    for c, result in enumerate(results):
        label = f"{result.name} {result.psnr:.1f}dB" if result.psnr < 99 else result.name
        draw.text((side + c * cell_w + 3, 3), label, fill="black")
        images = to_uint8(still_frames(result.images[:rows])).permute(0, 2, 3, 1).numpy()
        for r in range(rows):
            tile = Image.fromarray(images[r]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(tile, (side + c * cell_w, head + r * cell_h))
    tmp = path.with_name(f".{path.name}.tmp.png")
    grid.save(tmp)
    os.replace(tmp, path)


def save_step_error_plot(path: Path, results: Sequence[EvaluatedMethod], schedule: Sequence[float] | None,
                         boundaries: Sequence[float] = ()) -> None:
    """Per-step relative error of the tap against full compute, one line per method (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    for result in results[1:]:
        if not result.step_error:  # forecasts another tap than the reference records
            continue
        errors = [max(e, 1e-6) for e in result.step_error]
        ax.plot(range(len(errors)), errors, marker=".", label=result.name)
    if schedule is not None:
        for b in boundaries:
            crossing = next((i for i, t in enumerate(schedule) if t <= b), None)
            if crossing is not None:
                ax.axvline(crossing, color="gray", linestyle=":", linewidth=1)
                ax.text(crossing, ax.get_ylim()[1], f" t≤{b}", va="top", fontsize=7, color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("denoising step")
    ax.set_ylabel("relative error of the tap")
    ax.set_title("Forecast error per step vs full compute (0 on full steps)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def write_report(out: Path, results: Sequence[EvaluatedMethod], *, steps: int, prompts: Sequence[str],
                 title: str, notes: Sequence[str] = (), schedule: Sequence[float] | None = None,
                 boundaries: Sequence[float] = (), extra: dict[str, Any] | None = None,
                 main_methods: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``grid.png`` and ``error_per_step.png`` into ``out``; for videos also
    ``frames.png`` (frames side by side per method) and ``error_per_frame.png`` (PSNR per frame).

    ``report.json`` lists the ``main_methods`` (default: all) under ``methods`` and any other rows under
    ``extra_methods``; the Markdown table shows every row. A measured speed-up above its method's bound
    (steps / full passes: a forecast step is never free) is marked as timing noise.

    :raises OutputError: if ``out`` holds files LESA did not write (it is new, empty, or holds a report or
        :data:`~lesa_core.outputs.OUTPUT_MARKER`).
    """
    claim_output_folder(out, command="report", markers=REPORT_MARKERS)
    try:
        return _write_report_files(out, results, steps=steps, prompts=prompts, title=title, notes=notes,
                                   schedule=schedule, boundaries=boundaries, extra=extra, main_methods=main_methods)
    except OSError as exc:
        raise OutputError(f"could not write the report in '{out}' ({exc.strerror or exc}); free some disk space or "
                          "choose another --out") from None


def _write_report_files(out: Path, results: Sequence[EvaluatedMethod], *, steps: int, prompts: Sequence[str],
                        title: str, notes: Sequence[str], schedule: Sequence[float] | None,
                        boundaries: Sequence[float], extra: dict[str, Any] | None,
                        main_methods: Sequence[str] | None) -> dict[str, Path]:
    names = set(main_methods) if main_methods is not None else {r.name for r in results}
    data: dict[str, Any] = {"steps": steps, "methods": [r.row() for r in results if r.name in names]}
    others = [r.row() for r in results if r.name not in names]
    if others:
        data["extra_methods"] = others
    data.update(extra or {})
    _atomic_text(out / "report.json", json.dumps(data, indent=2) + "\n")
    lines = [f"# {title}", "", f"{len(prompts)} held-out prompts, {steps} steps. PSNR/SSIM against the full-compute "
             "images of the same prompt and seed (uint8 RGB, lossless).", "",
             "| method | full passes | PSNR dB | SSIM | adherence | seconds | speed-up |",
             "|---|---|---|---|---|---|---|"]
    noisy = False
    for r in results:
        adherence = "-" if r.adherence is None else f"{r.adherence:.0%}"
        shown = "∞" if r.psnr >= 99 else f"{r.psnr:.2f}"
        above = r.cost > 0 and r.speedup > 1.02 * steps / r.cost
        noisy = noisy or above
        passes = f"{r.full_passes:g}" if abs(r.cost - r.full_passes) < 0.05 else f"{r.full_passes:g} (FPE {r.cost:.2f})"
        lines.append(f"| {r.name} | {passes} | {shown} | {r.ssim:.4f} | {adherence} | {r.seconds:.2f} | "
                     f"{r.speedup:.2f}×{' †' if above else ''} |")
    lines += ["", "Seconds: wall clock of the whole sampling loop, measured interleaved (batch by batch, every method "
              "in turn), so every method sees the same machine load; the controlled measurement of speed is "
              "`lesa bench --speed` (docs/benchmarks.md). A speed-up cannot exceed steps / full passes. (FPE: the "
              "body blocks that really ran, in full passes, where they differ from the full steps — a probe's "
              "blocks on forecast steps, a cache's always-run first block.)"
              + (" † above that bound: timing noise on a busy machine." if noisy else "")]
    video = is_video(results[0].images)
    if video:
        lines += ["", f"Videos of {results[0].images.shape[1]} frames: PSNR over all frames of a video, SSIM the "
                  "mean of its frames'; grid.png shows each video's middle frame."]
    lines += ["", *notes, "", "![grid](grid.png)", "", "![error per step](error_per_step.png)", ""]
    if video:
        lines += ["![frames side by side](frames.png)", "", "![error per frame](error_per_frame.png)", ""]
    _atomic_text(out / "report.md", "\n".join(lines))
    save_grid(out / "grid.png", results, prompts)
    save_step_error_plot(out / "error_per_step.png", results, schedule, boundaries)
    names = ["report.json", "report.md", "grid.png", "error_per_step.png"]
    if video:
        save_frame_strips(out / "frames.png", results, prompts)
        save_frame_error_plot(out / "error_per_frame.png", results)
        names += ["frames.png", "error_per_frame.png"]
    return {name: out / name for name in names}


def images_to_tensor(images: Sequence[Any]) -> Tensor:
    """PIL images to a float ``(B, 3, H, W)`` tensor in [0, 1]."""
    import numpy as np

    return torch.from_numpy(np.stack([np.asarray(i) for i in images])).permute(0, 3, 1, 2).float() / 255
