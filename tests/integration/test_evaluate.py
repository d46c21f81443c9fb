"""lesa_workflows.evaluate on a tiny offline FluxPipeline: reference, per-step errors, methods on another tap."""

from __future__ import annotations

import pytest

from lesa_core.testing.tiny import tiny_flux_pipeline
from lesa_workflows.evaluate import evaluate

pytestmark = pytest.mark.integration

POLICY = {"name": "interval", "interval": 4, "warmup": 2, "force_full": []}


def test_methods_on_another_tap_get_images_but_no_step_error() -> None:
    pipe = tiny_flux_pipeline()
    methods = {
        "full": None,
        "taylor1": {"predictor": {"name": "taylor", "order": 1}, "policy": POLICY},
        "taylor1-output": {"tap": "output", "predictor": {"name": "taylor", "order": 1}, "policy": POLICY},
    }
    results = evaluate(pipe, methods, ["a prompt", "another prompt"], [0, 1], num_steps=12,
                       call_kwargs={"height": 32, "width": 32, "max_sequence_length": 16}, show_progress=False)
    full, same_tap, other_tap = results
    assert full.step_error == [0.0] * 12 and full.psnr == 100.0
    assert len(same_tap.step_error) == 12 and max(same_tap.step_error) > 0
    assert len(same_tap.psnr_per_image) == 2
    assert sum(same_tap.psnr_per_image) / 2 == pytest.approx(same_tap.psnr)
    assert same_tap.step_error[0] == 0.0  # a full step on the same trajectory
    assert other_tap.step_error == [] and other_tap.full_passes == 4 and 0 < other_tap.psnr < 100
