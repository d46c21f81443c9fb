"""Every installed plugin (entry points, the example plugin included) passes the conformance suites."""

from __future__ import annotations

import pytest

from lesa_core.composite import build_predictor
from lesa_core.errors import ConfigError
from lesa_core.plugins import PluginHost
from lesa_core.testing import PolicyConformance, PredictorConformance, RouterConformance

HOST = PluginHost.create()


def _default_router():
    return HOST.routers.get("threshold")(HOST.routers.get("threshold").Config())


@pytest.mark.parametrize("name", HOST.predictors.names())
class TestRegisteredPredictors(PredictorConformance):
    @pytest.fixture
    def predictor_factory(self, name: str):
        cls = HOST.predictors.get(name)
        try:
            build_predictor(cls, cls.Config(), _default_router(), channels=8)
            config = cls.Config()
        except ConfigError as error:  # a schedule-bound family (linear): give it a 20-step schedule
            if error.path != "predictor.schedule":
                raise
            config = cls.Config.model_validate({"schedule": [1.0 - i / 20 for i in range(20)] + [0.0]})
        return lambda: build_predictor(cls, config, _default_router(), channels=8)


@pytest.mark.parametrize("name", HOST.routers.names())
class TestRegisteredRouters(RouterConformance):
    @pytest.fixture
    def router(self, name: str):
        cls = HOST.routers.get(name)
        return cls(cls.Config())


@pytest.mark.parametrize("name", HOST.policies.names())
class TestRegisteredPolicies(PolicyConformance):
    @pytest.fixture
    def policy_factory(self, name: str):
        cls = HOST.policies.get(name)
        return lambda: cls(cls.Config())
