"""Probe-conditioned forecasting on a real (tiny, offline) FluxPipeline (issue #18 item 3): a forecast step runs
exactly the first k body blocks, the probe's drift reaches the predictor, the blocks are counted in full-pass
equivalents, and collection → closed-form fit → bundle works end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from runtime_support import inner_module

import lesa_core
from lesa_core.errors import AttachError
from lesa_core.interfaces import Decision, StepEvent
from lesa_core.plugins import PluginHost
from lesa_core.trainer import PipelineRunner, TrajectoryStore, train

pytestmark = pytest.mark.integration

STEPS = 12
POLICY = {"name": "interval", "interval": 4, "warmup": 2, "force_full": []}  # FFcccFcccFcc
FULL = [0, 1, 5, 9]
CALL = {"height": 32, "width": 32, "max_sequence_length": 16}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one torch thread."""


@pytest.fixture
def host(probe_plugin_host: PluginHost) -> PluginHost:
    return probe_plugin_host


@pytest.fixture
def pipe(four_block_pipe: Any) -> Any:
    """The tiny FLUX pipeline with a four-block body (2 double-stream, 2 single-stream)."""
    return four_block_pipe


def probe_run(k: int | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"name": "probe"}
    if k is not None:
        predictor["probe_blocks"] = k
    return {"predictor": predictor, "router": {"name": "threshold", "boundaries": []}, "policy": POLICY}


def blocks_of(pipe: Any) -> list[torch.nn.Module]:
    t = pipe.transformer
    return [*t.transformer_blocks, *t.single_transformer_blocks]


class BlockRuns:
    """Which body blocks really ran (their attention), per transformer call."""

    def __init__(self, pipe: Any) -> None:
        self.calls: list[list[int]] = []
        t = pipe.transformer
        self.handles = [t.register_forward_pre_hook(lambda *a: self.calls.append([]))]
        for i, block in enumerate(blocks_of(pipe)):
            self.handles.append(
                inner_module(block).register_forward_hook(lambda *a, i=i: self.calls[-1].append(i))
            )

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("k", [None, 1, 3])
def test_a_forecast_step_runs_exactly_the_first_k_blocks(pipe: Any, host: PluginHost, k: int | None) -> None:
    runs = BlockRuns(pipe)
    try:
        with lesa_core.attach(pipe, probe_run(k), host=host) as handle:
            out = pipe("a red circle", num_inference_steps=STEPS, output_type="pt", **CALL).images
            stats = handle.stats()["cond"]
    finally:
        runs.remove()
    expected_k = 1 if k is None else k  # unset: the adapter's declared probe point (the first block)
    assert torch.isfinite(out).all() and stats["decisions"] == "FFcccFcccFcc"
    for step, ran in enumerate(runs.calls):
        assert ran == (list(range(4)) if step in FULL else list(range(expected_k))), step


def test_the_probe_drift_since_the_last_full_pass_reaches_the_predictor(pipe: Any, host: PluginHost) -> None:
    """The drift handed to the predictor is the probe block's real output now minus at the last full pass,
    as an independent forward hook on that block sees them."""
    outputs: list[torch.Tensor] = []
    hook = blocks_of(pipe)[1].register_forward_hook(lambda m, a, o: outputs.append(o[1].detach().clone()))
    events: list[StepEvent] = []
    try:
        with lesa_core.attach(pipe, probe_run(2), host=host, observer=events.append):
            pipe("a red circle", num_inference_steps=STEPS, **CALL)
    finally:
        hook.remove()
    assert len(outputs) == STEPS and len(events) == STEPS
    for event in events:
        torch.testing.assert_close(event.probe, outputs[event.step_index], atol=0, rtol=0)
        if event.step_index in FULL:
            assert event.decision is Decision.COMPUTE and event.inputs is None
            continue
        last_full = max(s for s in FULL if s < event.step_index)
        assert event.decision is Decision.FORECAST and event.inputs is not None
        drift = event.inputs.probe_drift
        assert drift is not None and float(drift.abs().max()) > 0
        torch.testing.assert_close(drift, outputs[event.step_index] - outputs[last_full], atol=0, rtol=0)


def test_forecast_steps_with_a_probe_cost_k_blocks_in_full_pass_equivalents(
    pipe: Any, host: PluginHost
) -> None:
    from lesa_workflows.evaluate import evaluate

    methods = {
        "full": None,
        "taylor": {**probe_run(), "predictor": {"name": "taylor", "order": 1}},
        "probe-1": probe_run(1),
        "probe-3": probe_run(3),
    }
    results = {
        r.name: r
        for r in evaluate(
            pipe, methods, ["a red circle"], [0], num_steps=STEPS, call_kwargs=CALL, show_progress=False
        )
    }
    forecasts = STEPS - len(FULL)
    assert results["taylor"].full_pass_equivalents == pytest.approx(len(FULL))
    assert results["probe-1"].full_pass_equivalents == pytest.approx(len(FULL) + forecasts * 1 / 4)
    assert results["probe-3"].full_pass_equivalents == pytest.approx(len(FULL) + forecasts * 3 / 4)
    row = results["probe-3"].row()  # what the evaluate / demo reports write
    assert row["full_passes"] == len(FULL) and row["full_pass_equivalents"] == pytest.approx(10.0)
    assert results["probe-3"].cost == pytest.approx(10.0) and results["taylor"].cost == pytest.approx(len(FULL))


def test_a_probe_through_the_whole_body_or_with_a_model_output_tap_is_refused(
    pipe: Any, host: PluginHost
) -> None:
    with pytest.raises(AttachError, match="between 1 and 3"):
        lesa_core.attach(pipe, probe_run(4), host=host)
    with pytest.raises(AttachError, match="skips the whole forward"):
        lesa_core.attach(pipe, {**probe_run(), "tap": "output"}, host=host)
    assert lesa_core.attach(pipe, probe_run(), host=host).remove() is None  # nothing was left installed


def test_collect_records_probes_and_the_closed_form_fit_beats_taylor(pipe: Any, tmp_path: Path) -> None:
    config = {**probe_run(), "training": {"num_steps": STEPS, "seed": 3}}
    runner = PipelineRunner(pipe, **CALL)
    prompts = [f"a prompt number {i}" for i in range(4)]
    bundle, report = train(
        pipe,
        config,
        prompts,
        runner=runner,
        out=tmp_path / "bundle",
        data_dir=tmp_path / "data",
        show_progress=False,
    )
    store = TrajectoryStore(tmp_path / "data" / "trajectories")
    meta = store.read_meta()
    assert meta is not None and meta.probe_blocks == 1
    taps, probes = store.load()["cond"], store.load(what="probes")["cond"]
    assert probes.shape == (*taps.shape[:3], probes.shape[-1]) and probes.shape[:2] == (4, STEPS)
    fit = report.selection["closed_form"]
    assert fit["probe_rows"] > 0 and fit["residual_ratio"] < 1.0  # the drift explains part of Taylor's error
    with lesa_core.attach(pipe, str(bundle)) as handle:
        runner.run(prompts[:1], [0], STEPS)
        assert handle.stats()["cond"]["decisions"] == "FFcccFcccFcc"
