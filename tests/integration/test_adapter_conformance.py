"""Every adapter (the three built-ins and the Wan example) passes the adapter conformance suite."""

from __future__ import annotations

import pytest
import torch
from runtime_support import HAS_WAN_EXAMPLE, make_host

from lesa_core.plugins import PluginHost
from lesa_core.testing import tiny
from lesa_core.testing.adapters import AdapterConformance

pytestmark = pytest.mark.integration

BUILDERS = {
    "flux": tiny.tiny_flux_transformer,
    "qwen_image": tiny.tiny_qwen_image_transformer,
    "hunyuan_video": tiny.tiny_hunyuan_video_transformer,
    "wan": tiny.tiny_wan_transformer,
}
HOST = make_host()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


@pytest.mark.parametrize("name", [
    "flux", "qwen_image", "hunyuan_video",
    pytest.param("wan", marks=pytest.mark.skipif(not HAS_WAN_EXAMPLE, reason="lesa-example-wan not installed")),
])
class TestAdapters(AdapterConformance):
    @pytest.fixture
    def adapter_host(self) -> PluginHost:
        return HOST

    @pytest.fixture
    def adapter_model(self, name: str) -> torch.nn.Module:
        return BUILDERS[name]()

    @pytest.fixture
    def adapter_inputs(self, adapter_model: torch.nn.Module) -> dict[str, object]:
        return tiny.transformer_inputs(adapter_model, batch=2, height=4, width=4, frames=1)

    def test_resolves_to_its_registered_adapter(self, adapter_model: torch.nn.Module, name: str) -> None:
        assert HOST.resolve_adapter(adapter_model) is HOST.adapters.get(name)
