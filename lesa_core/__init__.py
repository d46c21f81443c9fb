"""LESA core: learned, stage-aware feature forecasting for Diffusion Transformers.

The core defines the plugin interfaces, the hook specifications, the plugin host, configuration and
the one resolution of a run (:func:`resolve_run`), bundles, the front door (:func:`attach`), the
trainer and sampler, metrics and the ``lesa`` command line. It imports no plugin package, no workflow
and no diffusers at import time.

Quick start::

    import lesa_core
    with lesa_core.attach(pipe, "my-bundle/"):        # or a dict / YAML run config
        image = pipe("a small red circle at the top left on a blue background").images[0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lesa_core.config import PluginSpec, RunConfig, TrainingConfig, load_config
from lesa_core.errors import (
    AttachError,
    BundleCorruptError,
    BundleError,
    BundleMismatchError,
    BundleNotFoundError,
    ConfigError,
    DuplicatePluginError,
    ForwardInputError,
    InvalidPluginError,
    LesaError,
    PluginLoadError,
    ScheduleMismatchError,
    TrainingError,
    UnknownPluginError,
    UnsupportedModelError,
)
from lesa_core.interfaces import (
    Attachment,
    BackboneAdapter,
    CachePolicy,
    Decision,
    ForecastInput,
    LinearPredictor,
    PluginConfig,
    Predictor,
    PredictorContext,
    RuntimeComponents,
    StageRouter,
    StepInfo,
    TapSpec,
)
from lesa_core.plugins import PluginHost, get_plugin_host, hookimpl
from lesa_core.run import ConfigLike, ResolvedRun, resolve_run

if TYPE_CHECKING:
    from lesa_core.handle import LesaHandle
    from lesa_core.pretrained import LesaBundle

__version__ = "0.1.0"


def attach(target: Any, config: ConfigLike | ResolvedRun = None, **kwargs: Any) -> LesaHandle:
    """Attach LESA to a pipeline or transformer; see :func:`lesa_core.handle.attach`."""
    from lesa_core.handle import attach as _attach

    return _attach(target, config, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "LesaBundle":  # the Hub-style from_pretrained / save_pretrained object (imports the runtime)
        from lesa_core.pretrained import LesaBundle

        return LesaBundle
    raise AttributeError(f"module 'lesa_core' has no attribute {name!r}")


__all__ = [
    "AttachError",
    "Attachment",
    "BackboneAdapter",
    "BundleCorruptError",
    "BundleError",
    "BundleMismatchError",
    "BundleNotFoundError",
    "CachePolicy",
    "ConfigError",
    "Decision",
    "DuplicatePluginError",
    "ForecastInput",
    "ForwardInputError",
    "InvalidPluginError",
    "LesaBundle",
    "LesaError",
    "LinearPredictor",
    "PluginConfig",
    "PluginHost",
    "PluginLoadError",
    "PluginSpec",
    "Predictor",
    "PredictorContext",
    "ResolvedRun",
    "RunConfig",
    "RuntimeComponents",
    "ScheduleMismatchError",
    "StageRouter",
    "StepInfo",
    "TapSpec",
    "TrainingConfig",
    "TrainingError",
    "UnknownPluginError",
    "UnsupportedModelError",
    "__version__",
    "attach",
    "get_plugin_host",
    "hookimpl",
    "load_config",
    "resolve_run",
]
