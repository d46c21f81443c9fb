"""Plumbing of the speed benchmark on the tiny backbone (the real CPU benchmark is not a test):
the JSON document, full-pass counting, cache sizes, the command line."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from lesa_adapters import hook_names
from lesa_workflows.bench import PolicySpec, build_model, run_speed_bench
from lesa_workflows.bench.methods import make_method, reachable_tensor_bytes
from lesa_workflows.bench.timing import Trajectory, _run_once

STEPS = 12  # LESA's schedule computes 0, 1, 2, 3, 9; diffusers' TaylorSeer (7, 3) computes 0, 1, 2, 4, 11


@pytest.fixture(scope="module", autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny matrices: one thread is as fast and never stalls in OpenMP barriers on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(one_thread):  # type: ignore[no-untyped-def]
    return build_model("tiny")


def test_policy_mask_is_lesas_schedule() -> None:
    mask = PolicySpec().mask(50)
    assert [s for s, m in enumerate(mask) if m] == [0, 1, 2, 3, 9, 16, 23, 30, 37, 44]


@pytest.mark.parametrize("name", ["full", "lesa", "taylor1", "diffusers-taylorseer", "diffusers-taylorseer-lite"])
def test_full_passes_are_counted_on_the_first_block(tiny, name: str) -> None:  # type: ignore[no-untyped-def]
    method = make_method(name, PolicySpec(), STEPS)
    method.prepare(tiny.transformer)
    try:
        _, passes, cache = _run_once(method, tiny, Trajectory(tiny, STEPS), timed=False)
    finally:
        method.close()
    assert passes == (STEPS if name == "full" else 5)
    assert (cache is None) == (name == "full")
    assert hook_names(tiny.transformer) == {}  # every method detached all of its hooks


def test_lesa_cache_is_k_taps_of_the_tapped_feature(tiny) -> None:  # type: ignore[no-untyped-def]
    policy = PolicySpec(interval=2)  # 12 steps: 0, 1, 2, 3, 4, 6, 8, 10 compute
    method = make_method("lesa", policy, STEPS)
    method.prepare(tiny.transformer)
    try:
        trajectory = Trajectory(tiny, STEPS)
        _, passes, cache = _run_once(method, tiny, trajectory, timed=False)
        assert _run_once(method, tiny, trajectory, timed=False)[1:] == (passes, cache)  # a second trajectory
    finally:
        method.close()
    tap_bytes = tiny.spec.image_tokens * tiny.spec.hidden_size * 4  # fp32 image-token hidden state
    assert passes == sum(policy.mask(STEPS)) == 8
    assert cache == 8 * tap_bytes  # K = max(4, 8, 8) taps kept per context


def test_reachable_tensor_bytes_counts_each_storage_once() -> None:
    a = torch.zeros(10)
    state = {"x": [a, a[2:]], "y": (a.view(2, 5),), "z": torch.nn.Linear(4, 4), "w": torch.ones(3, dtype=torch.float64)}
    assert reachable_tensor_bytes(state) == 40 + 24


def test_speed_report_json_schema(tiny) -> None:  # type: ignore[no-untyped-def]
    methods = ["full", "lesa", "taylor1", "diffusers-taylorseer-lite"]
    report = run_speed_bench(tiny, methods=methods, steps=STEPS, repeats=1, show_progress=False)
    doc = json.loads(json.dumps(report.to_json()))
    assert set(doc) == {"model", "device", "steps", "forecast_step_fraction", "methods"}
    assert doc["model"] == "tiny" and doc["steps"] == STEPS and doc["device"].startswith("cpu")
    assert 0 < doc["forecast_step_fraction"] < 1
    assert [m["name"] for m in doc["methods"]] == methods
    for row in doc["methods"]:
        assert set(row) == {"name", "full_passes", "seconds", "speedup", "cache_bytes"}
        assert row["seconds"] > 0 and row["speedup"] > 0
    full = doc["methods"][0]
    assert full["full_passes"] == STEPS and full["speedup"] == 1.0 and full["cache_bytes"] is None
    assert all(row["full_passes"] == 5 for row in doc["methods"][1:])
    assert "lesa" in report.table()


def test_unavailable_method_is_reported_as_skipped(tiny, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from lesa_workflows.bench import methods

    def broken_prepare(self, model) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("no such backend")

    monkeypatch.setattr(methods.LesaMethod, "prepare", broken_prepare)
    report = run_speed_bench(tiny, methods=["full", "taylor1"], steps=4, repeats=1, show_progress=False,
                             fraction_method="none")
    row = report.to_json()["methods"][1]
    assert row["skipped"].startswith("set-up failed: RuntimeError") and row["seconds"] is None
    assert report.to_json()["forecast_step_fraction"] is None


@pytest.mark.slow  # importing cache-dit alone takes ~5 s
@pytest.mark.skipif(importlib.util.find_spec("cache_dit") is None, reason="cache-dit not installed")
def test_cache_dit_runs_on_its_own_copy(tiny, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    method = make_method("cache-dit", PolicySpec(), STEPS)
    method.prepare(tiny.transformer)
    try:
        _, passes, cache = _run_once(method, tiny, Trajectory(tiny, STEPS), timed=False)
    finally:
        method.close()
    assert passes == 5 and cache is not None and cache > 0
    assert "_context_manager" not in vars(tiny.transformer)
    assert capsys.readouterr().out == ""  # cache-dit's logging must not reach stdout (--json)


def test_cli_prints_exactly_the_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    from lesa_core.cli import main

    code = main(["bench", "--speed", "--json", "--model", "tiny", "--steps", "5", "--repeats", "1",
                 "--methods", "full,taylor1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    assert [m["name"] for m in doc["methods"]] == ["full", "taylor1"]
    assert main(["bench", "--json"]) == 2  # no benchmark kind
    assert main(["bench", "--speed", "--methods", "full,nope"]) == 2
