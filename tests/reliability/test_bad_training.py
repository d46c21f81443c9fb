"""Bad training inputs on the tiny FLUX pipeline: refused with a TrainingError that says what to do,
before anything is written, the model unmodified."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import CALL, KAN_CONFIG, expect_error

from lesa_core.errors import TrainingError
from lesa_core.plugins import PluginHost
from lesa_core.trainer import PipelineRunner, train

pytestmark = pytest.mark.integration

PROMPTS = ["a red circle", "a blue square"]  # what the session's kan_bundle was trained on


def _damage_store_meta(data: Path) -> None:
    (data / "trajectories" / "store.json").write_text("{\"model_class\": ")


def _damage_checkpoint_state(data: Path) -> None:
    (data / "checkpoint" / "checkpoint.json").write_text("{\"progress\": {\"key\"")


def _damage_checkpoint_tensors(data: Path) -> None:
    tensors = data / "checkpoint" / "checkpoint.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])


# (case id, config edits, prompts, batch size (deprecated; None: not given), damage to a copy of the session's
# data folder, words)
CASES: list[tuple[str, dict[str, Any], list[str], int | None, Callable[[Path], None] | None, list[str]]] = [
    ("train-no-prompts", {}, [], None, None, ["no prompts", "give at least one prompt"]),
    ("train-batch-size-zero", {}, PROMPTS, 0, None, ["batch_size must be at least 1"]),
    ("train-training-free-predictor", {"predictor": {"name": "taylor", "order": 2}}, PROMPTS, None, None,
     ["'taylor' is training-free", "attach it directly"]),
    ("train-data-dir-of-another-collection", {"training": {**KAN_CONFIG["training"], "num_steps": 9}}, PROMPTS, None,
     lambda d: None, ["different collection", "num_steps", "use another training.data_dir"]),
    ("train-data-dir-other-prompts", {}, ["something else entirely", *PROMPTS], None, lambda d: None,
     ["different collection", "prompts"]),
    ("train-store-metadata-damaged", {}, PROMPTS, None, _damage_store_meta, ["store.json is damaged", "delete the folder"]),
    ("train-checkpoint-state-damaged", {}, PROMPTS, None, _damage_checkpoint_state,
     ["checkpoint.json is damaged", "delete the folder"]),
    ("train-checkpoint-tensors-damaged", {}, PROMPTS, None, _damage_checkpoint_tensors,
     ["checkpoint.safetensors is damaged", "delete the folder"]),
]


@pytest.mark.parametrize(("case", "edits", "prompts", "batch_size", "damage", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_training_input(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, kan_bundle: Path,
                            tmp_path: Path, case: str, edits: dict[str, Any], prompts: list[str], batch_size: int | None,
                            damage: Callable[[Path], None] | None, words: list[str]) -> None:
    data = tmp_path / "data"
    if damage is not None:  # start from the finished collection and checkpoint of the session's bundle
        shutil.copytree(kan_bundle.parent / "data", data)
        damage(data)
    config = {**KAN_CONFIG, **edits}
    expect_error(case, "training",
                 lambda: train(flux_pipe, config, prompts, runner=PipelineRunner(flux_pipe, **CALL),
                               out=tmp_path / "bundle", data_dir=data, batch_size=batch_size, host=host,
                               show_progress=False),
                 TrainingError, words, folders=[tmp_path], model=flux_pipe.transformer, inputs=flux_inputs)
