"""Fixtures shared by the integration tests (helpers: ``runtime_support``)."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_support import four_block_flux_pipeline, probe_host

from lesa_core.plugins import PluginHost


@pytest.fixture(scope="module")
def four_block_pipe() -> Any:
    """The tiny FLUX pipeline with a four-block body (2 double-stream, 2 single-stream)."""
    return four_block_flux_pipeline()


@pytest.fixture(scope="module")
def probe_plugin_host() -> PluginHost:
    """The built-in plugins, the adapters and the ``probe`` predictor."""
    return probe_host()
