"""Single-process pieces of the scale-out support: the session without torchrun, device mapping, and
the call arguments a pipeline folder carries (``lesa_call.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lesa_core import distributed
from lesa_core.errors import ConfigError
from lesa_core.sources import CALL_DEFAULTS_FILE, PretrainedPipelineSource


def test_session_without_torchrun_is_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.device) == (0, 1, True, torch.device("cpu"))
        assert not torch.distributed.is_initialized()
        assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
        distributed.barrier()  # a no-op


def test_cuda_means_the_local_rank_under_torchrun() -> None:
    assert distributed._device_for("cuda", 3, 1) == torch.device("cuda")  # single process: untouched
    assert distributed._device_for("cuda:1", 3, 4) == torch.device("cuda", 1)  # explicit index kept
    assert distributed._device_for("cpu", 3, 4) == torch.device("cpu")
    if torch.cuda.device_count() == 0:
        assert distributed._device_for("cuda", 3, 4) == torch.device("cuda", 0)


def test_a_pipeline_folder_carries_its_call_arguments(tmp_path: Path) -> None:
    source = PretrainedPipelineSource(str(tmp_path))
    assert source.call_defaults() == {}
    call = {"height": 32, "width": 32, "max_sequence_length": 16}
    (tmp_path / CALL_DEFAULTS_FILE).write_text(json.dumps(call))
    assert source.call_defaults() == call
    (tmp_path / CALL_DEFAULTS_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        source.call_defaults()
    (tmp_path / CALL_DEFAULTS_FILE).write_text("{height: 32")
    with pytest.raises(ConfigError, match="not valid JSON"):
        source.call_defaults()
