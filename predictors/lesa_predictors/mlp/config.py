"""Parameters of the ``mlp`` predictor family (the paper's KAN → MLP ablation)."""

from __future__ import annotations

from lesa_predictors._linear_forecaster import TimeScaledConfig


class MLPConfig(TimeScaledConfig):
    """The ``kan`` expert with a SiLU MLP ``[D, *hidden, 1]`` in place of the KAN.

    Fields: see :class:`~lesa_predictors._linear_forecaster.TimeScaledConfig`.
    """
