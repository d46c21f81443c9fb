"""Exact results under any batching: a collected trajectory depends on its fixed group of prompts
(``training.collect_batch``), their seeds and the store's identity only — not on the batch size an old
script passes, the number of ranks sharing the collection, where an interrupted collection resumed, or the
group size the resuming run asks for (the store keeps its own). (Batch size 2 and 8 once gave different
bundles from scratch.)"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import CALL, KAN_CONFIG, expect_behaviour

from lesa_core.bundle import BUNDLE_WEIGHTS_NAME
from lesa_core.errors import TrainingError
from lesa_core.plugins import PluginHost
from lesa_core.trainer import PipelineRunner, collect_trajectories, train

pytestmark = pytest.mark.integration

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow star", "a white cross"]
GROUPS_OF_2 = {**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "collect_batch": 2}}  # [0, 1], [2, 3], [4]
GROUPS_OF_3 = {**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "collect_batch": 3}}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _differences(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    if sorted(a) != sorted(b):
        return [f"files differ: {sorted(a)} vs {sorted(b)}"]
    return [f"{name} differs" for name in a if a[name] != b[name]]


def test_batch_size_2_and_8_give_the_same_bundle(flux_pipe: Any, host: PluginHost, tmp_path: Path) -> None:
    def check() -> list[str]:
        bundles, stores = {}, {}
        for size in (2, 8):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                bundle, _ = train(flux_pipe, KAN_CONFIG, PROMPTS, runner=PipelineRunner(flux_pipe, **CALL),
                                  out=tmp_path / f"bundle{size}", data_dir=tmp_path / f"data{size}", batch_size=size,
                                  host=host, show_progress=False)
            bundles[size] = (bundle / BUNDLE_WEIGHTS_NAME).read_bytes()
            stores[size] = _files(tmp_path / f"data{size}" / "trajectories")
        problems = _differences(stores[2], stores[8])
        if bundles[2] != bundles[8]:
            problems.append("the bundles differ")
        return problems

    expect_behaviour("batch-size-2-vs-8", "resume", check)


def test_the_deprecated_batch_size_says_so(flux_pipe: Any, host: PluginHost, tmp_path: Path) -> None:
    def check() -> list[str]:
        with pytest.warns(DeprecationWarning, match="batch_size is deprecated and ignored"):
            collect_trajectories(flux_pipe, KAN_CONFIG, PROMPTS[:1], runner=PipelineRunner(flux_pipe, **CALL),
                                 data_dir=tmp_path, batch_size=4, host=host, show_progress=False)
        return []

    expect_behaviour("batch-size-deprecation-warning", "resume", check)


def test_two_ranks_collect_what_one_process_collects(flux_pipe: Any, host: PluginHost, tmp_path: Path) -> None:
    """Sharded over two ranks (group k on rank k % 2), the store is byte for byte the single process's."""

    def check() -> list[str]:
        runner = PipelineRunner(flux_pipe, **CALL)
        collect_trajectories(flux_pipe, GROUPS_OF_2, PROMPTS, runner=runner, data_dir=tmp_path / "one", host=host,
                             show_progress=False)
        for rank in (1, 0):
            collect_trajectories(flux_pipe, GROUPS_OF_2, PROMPTS, runner=runner, data_dir=tmp_path / "two",
                                 host=host, rank=rank, world_size=2, show_progress=False)
        return _differences(_files(tmp_path / "one" / "trajectories"), _files(tmp_path / "two" / "trajectories"))

    expect_behaviour("two-ranks-equal-one-process", "resume", check)


class _StopsAfter(PipelineRunner):
    """Raises after ``limit`` sampling calls (a collection interrupted part-way); records every call's seeds."""

    def __init__(self, pipe: Any, limit: int | None, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.limit = limit
        self.seeds: list[list[int]] = []

    def run(self, prompts: Any, seeds: Any, *args: Any, **kwargs: Any) -> Any:
        if self.limit == 0:
            raise KeyboardInterrupt
        if self.limit is not None:
            self.limit -= 1
        self.seeds.append([int(s) for s in seeds])
        return super().run(prompts, seeds, *args, **kwargs)


@pytest.mark.parametrize("done", [1, 2], ids=lambda n: f"after-{n}-groups")
def test_interrupted_collection_resumes_to_the_same_store(done: int, flux_pipe: Any, host: PluginHost,
                                                          tmp_path: Path) -> None:
    """Groups of 2 ([0, 1], [2, 3], [4]), interrupted after ``done`` groups and resumed by a run that asks for
    groups of 3: the store keeps its groups of 2, samples only the missing ones, and equals the whole run's."""

    def check() -> list[str]:
        collect_trajectories(flux_pipe, GROUPS_OF_2, PROMPTS, runner=PipelineRunner(flux_pipe, **CALL),
                             data_dir=tmp_path / "whole", host=host, show_progress=False)
        try:
            collect_trajectories(flux_pipe, GROUPS_OF_2, PROMPTS, runner=_StopsAfter(flux_pipe, done, **CALL),
                                 data_dir=tmp_path / "resumed", host=host, show_progress=False)
            return ["the interruption did not happen"]
        except KeyboardInterrupt:
            pass
        resuming = _StopsAfter(flux_pipe, None, **CALL)
        collect_trajectories(flux_pipe, GROUPS_OF_3, PROMPTS, runner=resuming,
                             data_dir=tmp_path / "resumed", host=host, show_progress=False)
        seed = KAN_CONFIG["training"].get("seed", 0)
        expected = [[seed + i for i in group] for group in ([0, 1], [2, 3], [4])[done:]]
        problems = [] if resuming.seeds == expected else [f"resumed calls {resuming.seeds}, expected {expected}"]
        problems += _differences(_files(tmp_path / "whole" / "trajectories"),
                                 _files(tmp_path / "resumed" / "trajectories"))
        if (tmp_path / "resumed" / "lesa.lock").exists():
            problems.append("the interrupted run left its lock file")
        return problems

    expect_behaviour(f"collection-interrupted-after-{done}", "resume", check)


class _TooBigForMemory(PipelineRunner):
    """Runs out of memory on any call of more than one prompt (as a real video model may on a GPU)."""

    def run(self, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        if len(prompts) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().run(prompts, *args, **kwargs)


def test_a_group_that_does_not_fit_in_memory_says_what_to_set(flux_pipe: Any, host: PluginHost,
                                                               tmp_path: Path) -> None:
    """Groups of 2 run out of memory: a TrainingError names training.collect_batch; the store, with no shard
    yet, then takes the smaller size the next run asks for and collects what one prompt per call collects."""

    def check() -> list[str]:
        problems = []
        try:
            collect_trajectories(flux_pipe, GROUPS_OF_2, PROMPTS, runner=_TooBigForMemory(flux_pipe, **CALL),
                                 data_dir=tmp_path / "d", host=host, show_progress=False)
            problems.append("no error")
        except TrainingError as exc:
            if "training.collect_batch" not in str(exc):
                problems.append(f"unclear error: {exc}")
        ones = {**KAN_CONFIG, "training": {**KAN_CONFIG["training"], "collect_batch": 1}}
        meta = collect_trajectories(flux_pipe, ones, PROMPTS, runner=_TooBigForMemory(flux_pipe, **CALL),
                                    data_dir=tmp_path / "d", host=host, show_progress=False)
        collect_trajectories(flux_pipe, ones, PROMPTS, runner=PipelineRunner(flux_pipe, **CALL),
                             data_dir=tmp_path / "fresh", host=host, show_progress=False)
        if meta.collect_batch != 1:
            problems.append(f"the store kept collect_batch {meta.collect_batch}")
        return problems + _differences(_files(tmp_path / "d" / "trajectories"),
                                       _files(tmp_path / "fresh" / "trajectories"))

    expect_behaviour("collect-batch-out-of-memory", "resume", check)
