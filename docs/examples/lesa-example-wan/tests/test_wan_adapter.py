"""A third-party adapter reuses LESA's adapter conformance suite (run: ``pytest docs/examples/lesa-example-wan``)."""

from __future__ import annotations

import pytest
import torch

from lesa_core.testing.adapters import AdapterConformance
from lesa_core.testing.tiny import tiny_wan_transformer, transformer_inputs


class TestWanAdapter(AdapterConformance):
    @pytest.fixture
    def adapter_model(self) -> torch.nn.Module:
        return tiny_wan_transformer()

    @pytest.fixture
    def adapter_inputs(self, adapter_model: torch.nn.Module) -> dict[str, object]:
        return transformer_inputs(adapter_model, batch=2, height=4, width=4, frames=1)
