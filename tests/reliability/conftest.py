"""Fixtures of the reliability suite: one tiny FLUX pipeline and one trained, schedule-bound KAN
bundle per session (cases must leave both untouched), and the case tally printed at the end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import CALL, KAN_CONFIG, TALLY, plugin_modules

from lesa_core.plugins import PluginHost


@pytest.fixture(scope="session")
def host() -> PluginHost:
    """The built-in plugins, registered explicitly (independent of installed entry points)."""
    return PluginHost.create(autoload=False, plugins=plugin_modules())


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (tiny models: threads only add overhead)."""


@pytest.fixture(scope="session")
def flux_pipe() -> Any:
    from lesa_core.testing.tiny import tiny_flux_pipeline

    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def flux_inputs(flux_pipe: Any) -> dict[str, Any]:
    """Fixed inputs of one forward call of the tiny FLUX transformer (the model-unmodified check)."""
    from lesa_core.testing.tiny import transformer_inputs

    return transformer_inputs(flux_pipe.transformer, t=0.7)


@pytest.fixture(scope="session")
def kan_bundle(flux_pipe: Any, host: PluginHost, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KAN bundle with ``time_encoding: schedule`` trained on the session pipeline at STEPS steps."""
    from lesa_core.trainer import PipelineRunner, train

    root = tmp_path_factory.mktemp("kan")
    torch.set_num_threads(1)
    path, _ = train(flux_pipe, KAN_CONFIG, ["a red circle", "a blue square"], runner=PipelineRunner(flux_pipe, **CALL),
                    out=root / "bundle", data_dir=root / "data", host=host, show_progress=False)
    return path


@pytest.fixture(scope="session")
def pipeline_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny FLUX pipeline saved with ``save_pretrained`` (what ``--model <folder>`` loads), with the
    call arguments it needs in ``lesa_call.json``."""
    import json

    from lesa_core.testing.tiny import tiny_flux_pipeline

    folder = tmp_path_factory.mktemp("model") / "tiny-flux"
    tiny_flux_pipeline().save_pretrained(folder)
    (folder / "lesa_call.json").write_text(json.dumps(CALL))
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    errors = [o for o in TALLY if o.error]
    behaviours = [o for o in TALLY if not o.error]
    by_category: dict[str, int] = {}
    for o in TALLY:
        by_category[o.category] = by_category.get(o.category, 0) + 1
    terminalreporter.section("reliability tally")
    terminalreporter.write_line(
        f"cases tried: {len(TALLY)} ({len(errors)} bad inputs, {len(behaviours)} runtime behaviours); "
        f"errors that were clear: {sum(o.clear for o in errors)}/{len(errors)}; "
        f"behaviours as specified: {sum(o.clear for o in behaviours)}/{len(behaviours)}; "
        f"files left half-written: {sum(len(o.stray) for o in TALLY)}; "
        f"leaks found: {sum(len(o.leaks) > 0 for o in TALLY)}"
    )
    terminalreporter.write_line("by category: " + ", ".join(f"{k} {v}" for k, v in sorted(by_category.items())))
    if os.environ.get("LESA_RELIABILITY_MESSAGES"):
        for o in TALLY:
            if o.error:
                terminalreporter.write_line(f"  [{o.category}] {o.case}: {o.message}")
    unclear = [o.case for o in TALLY if not o.clear]
    if unclear:
        terminalreporter.write_line(f"not clear / not as specified: {unclear}")
