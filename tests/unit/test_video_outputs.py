"""Video outputs in the workflows: metrics over all frames, the frame strips and the per-frame plot."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from lesa_core.metrics import psnr, ssim, to_uint8
from lesa_workflows.evaluate import EvaluatedMethod, _images
from lesa_workflows.report import write_report
from lesa_workflows.video import is_video, per_sample_quality, still_frames


def test_a_video_pipeline_output_gives_its_frames() -> None:
    frames = torch.rand(2, 5, 3, 8, 8)
    assert torch.equal(_images(SimpleNamespace(frames=frames)), frames)
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(_images(SimpleNamespace(images=images)), images)
    assert is_video(frames) and not is_video(images)
    assert torch.equal(still_frames(frames), frames[:, 2]) and still_frames(images) is images


def test_video_psnr_is_over_all_frames_and_per_frame() -> None:
    g = torch.Generator().manual_seed(0)
    ref = to_uint8(torch.rand(3, 4, 3, 16, 16, generator=g))
    test = ref.clone()
    test[:, 3] = to_uint8(torch.rand(3, 3, 16, 16, generator=g))  # only the last frame differs
    video_psnr, video_ssim, frame_psnr = per_sample_quality(ref, test)
    mse = (ref.double() - test.double()).pow(2).flatten(1).mean(1)
    assert torch.allclose(video_psnr, 10 * torch.log10(255.0**2 / mse))
    assert frame_psnr is not None and frame_psnr.shape == (4,)
    assert frame_psnr[:3].min() == frame_psnr.max() and frame_psnr[3] < 20  # identical frames sit at the cap
    last = ssim(ref[:, 3], test[:, 3])
    assert torch.allclose(video_ssim, (3 + last) / 4)
    images_psnr, images_ssim, none = per_sample_quality(ref[:, 0], test[:, 3])
    assert none is None and torch.equal(images_psnr, psnr(ref[:, 0], test[:, 3]))
    assert torch.equal(images_ssim, ssim(ref[:, 0], test[:, 3]))


def test_video_report_has_frame_strips_and_error_per_frame(tmp_path: Path) -> None:
    frames = 5
    videos = torch.rand(2, frames, 3, 16, 16)
    names = ["full", "lesa", "reuse"]
    results = [
        EvaluatedMethod(n, 50 if n == "full" else 10, 1.0, videos.clone(), step_error=[0.0, 0.1], psnr=30.0,
                        ssim=0.9, psnr_per_frame=[] if n == "full" else [40.0, 35.0, 30.0, 28.0, 25.0])
        for n in names
    ]  # fmt: skip
    paths = write_report(tmp_path, results, steps=2, prompts=["a", "b"], title="t")
    for name in ("grid.png", "error_per_step.png", "frames.png", "error_per_frame.png"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(paths["frames.png"]) as strip:
        size = strip.size
    assert size[0] == 96 + frames * 64 and size[1] == 2 * (14 + 3 * 64)  # 2 prompts x 3 methods
    text = paths["report.md"].read_text()
    assert "frames.png" in text and "error_per_frame.png" in text and "PSNR over all frames" in text
    assert json.loads(paths["report.json"].read_text())["steps"] == 2
