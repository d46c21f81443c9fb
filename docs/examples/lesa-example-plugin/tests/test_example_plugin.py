"""The example plugin passes LESA's conformance suites (this is how a plugin author tests)."""

from __future__ import annotations

import pytest

from lesa_core.testing import PredictorConformance, RouterConformance
from lesa_example_plugin import DampedConfig, DampedPredictor, UniformConfig, UniformRouter


class TestDampedPredictor(PredictorConformance):
    @pytest.fixture
    def predictor_factory(self):
        return lambda: DampedPredictor(DampedConfig())


class TestUniformRouter(RouterConformance):
    @pytest.fixture(params=[1, 2, 5])
    def router(self, request):
        return UniformRouter(UniformConfig(num_stages=request.param))
