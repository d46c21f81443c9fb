"""The four plugin interfaces of LESA (an **API boundary**: plugins depend on these and nothing deeper).

- :class:`Predictor` — a pure ``nn.Module``: past tapped features and their times in, forecast out.
- :class:`StageRouter` — flow time ``t`` in [0, 1] (1 = noise) to a stage index.
- :class:`CachePolicy` — per denoising step: compute the body, or forecast it.
- :class:`BackboneAdapter` — how a concrete DiT is split into stem / body / head, where its taps are,
  how to read ``t`` from its forward call, and how to attach the runtime to it.
"""

from lesa_core.interfaces.adapter import Attachment, BackboneAdapter, RuntimeComponents, StepEvent, TapSpec
from lesa_core.interfaces.base import PluginConfig
from lesa_core.interfaces.fitting import ClosedFormFit, CoefficientStart, CoefficientTarget, Example
from lesa_core.interfaces.policy import AlwaysCompute, CachePolicy, Decision, ScheduleError, StepInfo, replay
from lesa_core.interfaces.predictor import ForecastInput, LinearPredictor, Predictor, PredictorContext
from lesa_core.interfaces.router import StageRouter

__all__ = [
    "AlwaysCompute",
    "Attachment",
    "BackboneAdapter",
    "CachePolicy",
    "ClosedFormFit",
    "CoefficientStart",
    "CoefficientTarget",
    "Decision",
    "Example",
    "ForecastInput",
    "LinearPredictor",
    "PluginConfig",
    "Predictor",
    "PredictorContext",
    "RuntimeComponents",
    "ScheduleError",
    "StageRouter",
    "StepEvent",
    "StepInfo",
    "TapSpec",
    "replay",
]
