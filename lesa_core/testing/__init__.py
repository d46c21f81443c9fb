"""Conformance test kit for LESA plugins (an **API boundary**: third-party packages reuse it).

Subclass a mixin in your own test module and provide its fixture::

    from lesa_core.testing import PredictorConformance

    class TestMyPredictor(PredictorConformance):
        @pytest.fixture
        def predictor_factory(self):
            return lambda: MyPredictor(MyPredictor.Config())

The mixins import pytest; nothing in ``lesa_core`` imports this package.
"""

from lesa_core.testing.policies import PolicyConformance
from lesa_core.testing.predictors import PredictorConformance, make_forecast_input
from lesa_core.testing.routers import RouterConformance

__all__ = ["PolicyConformance", "PredictorConformance", "RouterConformance", "make_forecast_input"]
