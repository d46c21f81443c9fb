"""Shared fixtures: a fresh plugin host per test, one torch thread, GPU auto-skip."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def builtin_plugin_modules() -> list[object]:
    """The built-in plugin modules, registered explicitly (independent of installed metadata)."""
    import lesa_predictors.taylor
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.threshold

    return [lesa_predictors.taylor, lesa_schedulers.policies.interval, lesa_schedulers.routers.threshold]


@pytest.fixture
def plugin_host(builtin_plugin_modules: list[object]):
    """A fresh host holding only the built-in core plugins (no entry-point autoload)."""
    from lesa_core.plugins import PluginHost

    return PluginHost.create(autoload=False, plugins=builtin_plugin_modules)


@pytest.fixture
def one_thread():
    """Run the test on one torch thread: tiny ops are as fast, numerics and timings stay stable on a
    shared 2-core machine, and the other core is left to parallel test runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
