"""Reports (JSON schema, PNG files) and the fidelity metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lesa_core.metrics import paired_difference, psnr, ssim, to_uint8
from lesa_workflows.evaluate import EvaluatedMethod
from lesa_workflows.report import write_report


def test_psnr_matches_its_definition_and_caps_identical_images() -> None:
    a = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    b = torch.full((1, 3, 8, 8), 10, dtype=torch.uint8)
    assert abs(psnr(a, b).item() - 20 * math.log10(255 / 10)) < 1e-9
    assert psnr(a, a).item() == 100.0


def test_ssim_is_one_for_identical_and_drops_with_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    img = to_uint8(torch.rand(2, 3, 32, 32, generator=gen))
    noisy = to_uint8((img.float() / 255 + 0.2 * torch.randn(img.shape, generator=gen)).clamp(0, 1))
    assert torch.allclose(ssim(img, img), torch.ones(2, dtype=torch.float64))
    assert (ssim(img, noisy) < 0.9).all()


def test_report_files_and_json_schema(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 16, 16)
    names = ["full", "lesa", "mlp", "taylor1", "taylor2", "reuse", "lesa@N10"]
    results = [EvaluatedMethod(n, 50 if n == "full" else 10, 1.0, images.clone(), step_error=[0.0, 0.1, 0.2],
                            psnr=30.0, ssim=0.9, adherence=0.5, speedup=5.0) for n in names]
    paths = write_report(tmp_path, results, steps=3, prompts=["a", "b"], title="t", schedule=[1.0, 0.5, 0.2, 0.0],
                         boundaries=[0.9, 0.5], main_methods=names[:6])
    data = json.loads(paths["report.json"].read_text())
    assert data["steps"] == 3
    assert [m["name"] for m in data["methods"]] == names[:6]
    assert set(data["methods"][0]) == {"name", "full_passes", "psnr", "ssim", "adherence", "seconds", "speedup",
                                       "full_pass_equivalents"}
    assert [m["name"] for m in data["extra_methods"]] == ["lesa@N10"]
    for name in ("grid.png", "error_per_step.png"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| lesa | 10 |" in paths["report.md"].read_text()


def test_paired_difference_caps_identical_images_and_needs_two_for_an_error() -> None:
    """Every Δ ± s.e. of the benches: per-image differences, ∞ dB (identical images) counted as 100 dB."""
    mean, se = paired_difference([2.0, 4.0, 6.0], [1.0, 1.0, 1.0])
    assert mean == pytest.approx(3.0) and se == pytest.approx((4 / 3) ** 0.5)
    assert paired_difference([float("inf"), 50.0], [40.0, 50.0])[0] == pytest.approx(30.0)
    mean, se = paired_difference([3.0], [1.0])
    assert mean == 2.0 and math.isnan(se)
    with pytest.raises(ValueError, match="same images"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same images"):
        paired_difference([], [])
