"""Assemble a resolved run for one model: pick the adapter, check the tap and the bundle, build the
predictor.

* :func:`bind` — a :class:`~lesa_core.run.ResolvedRun` bound to a model: the adapter that describes the
  model, the tap to forecast, and (for a bundle) the check that the bundle fits both. Collection needs
  nothing more.
* :func:`assemble` — a binding plus the predictor (the bundle's weights loaded strictly): everything
  :func:`lesa_core.attach` hands to the adapter's runtime.

Both run once per run; nothing here is on the per-step path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lesa_core.bundle import BundleMetadata, build_and_load, check_fits
from lesa_core.composite import build_predictor
from lesa_core.config import ResolvedPlugins, RunConfig
from lesa_core.errors import ConfigError, UnsupportedModelError
from lesa_core.interfaces import BackboneAdapter, Predictor, RuntimeComponents, StepEvent
from lesa_core.plugins import PluginHost, get_plugin_host
from lesa_core.run import ConfigLike, ResolvedRun, resolve_run


def find_transformer(target: Any) -> nn.Module:
    """The denoiser of ``target``: ``target.transformer`` for a pipeline, else ``target`` itself."""
    if isinstance(target, nn.Module):
        return target
    transformer = getattr(target, "transformer", None)
    if isinstance(transformer, nn.Module):
        return transformer
    raise UnsupportedModelError(
        f"cannot find a transformer in {type(target).__qualname__}: pass a diffusers pipeline with a "
        "`transformer` component or the transformer module itself"
    )


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@dataclass(frozen=True)
class Binding:
    """A run bound to one model.

    :ivar run: the resolved run.
    :ivar adapter: the adapter describing the model.
    :ivar tap: the tap to forecast (the run's, else the adapter's default).
    """

    run: ResolvedRun
    adapter: BackboneAdapter
    tap: str

    @property
    def channels(self) -> int:
        """Size of the tap's last axis."""
        return self.adapter.tap_channels(self.tap)

    def build_predictor(self) -> Predictor:
        """A fresh predictor of the run's family for this tap (one expert per stage when stage-aware)."""
        plugins = self.run.plugins
        return build_predictor(plugins.predictor_cls, plugins.predictor_config, plugins.router, self.channels)

    def with_predictor(self, predictor: Predictor) -> Assembly:
        return Assembly(self.run, self.adapter, self.tap, predictor)


def bind(model: nn.Module, run: ResolvedRun, *, host: PluginHost | None = None) -> Binding:
    """Pick the adapter for ``model`` (the run's, or the one that claims it), check the tap, and check
    that the run's bundle (if any) was trained for this model and tap.

    :raises UnsupportedModelError: if no adapter (or not the named one) handles the model.
    :raises ConfigError: for a tap the adapter does not offer.
    :raises BundleMismatchError: for a bundle trained on another model, config or tap.
    """
    host = host or get_plugin_host()
    name = run.config.adapter
    if name == "auto":
        adapter_cls = host.resolve_adapter(model)
    else:
        adapter_cls = host.adapters.get(name)
        if not adapter_cls.claims(model):
            raise UnsupportedModelError(
                f"adapter '{name}' does not handle {type(model).__qualname__}; use adapter: auto "
                f"or one of the registered adapters: {', '.join(host.adapters.names())}"
            )
    adapter = adapter_cls(model)
    tap = run.config.tap or adapter.default_tap
    try:
        adapter.check_tap(tap)
    except ValueError as exc:
        raise ConfigError(str(exc), source=run.origin, path="tap") from None
    if run.bundle is not None:
        check_fits(run.bundle.metadata, model_class=adapter.model_class(), fingerprint=adapter.fingerprint(),
                   tap=tap, source=str(run.bundle.path))
    return Binding(run, adapter, tap)


@dataclass
class Assembly:
    """Everything a run needs, built but not attached (the trainer and the workflows use it directly).

    :ivar run: the resolved run. :ivar adapter: / :ivar tap: its binding to the model.
    :ivar predictor: the predictor the runtime forecasts with.
    """

    run: ResolvedRun
    adapter: BackboneAdapter
    tap: str
    predictor: Predictor

    @property
    def config(self) -> RunConfig:
        return self.run.config

    @property
    def plugins(self) -> ResolvedPlugins:
        return self.run.plugins

    def bundle_metadata(self, host: PluginHost, *, schedule: list[float] | None,
                        extra: dict[str, Any] | None = None) -> BundleMetadata:
        """The metadata a bundle of this run's predictor records (plugins with their distributions,
        model class and fingerprint, tap, schedule, stage boundaries, the run config)."""
        run = self.run
        plugins = {
            kind: {"name": entry.name, "distribution": entry.distribution, "version": entry.version}
            for kind, entry in (
                ("predictor", host.predictors.entry(run.predictor.name)),
                ("router", host.routers.entry(run.router.name)),
                ("policy", host.policies.entry(run.policy.name)),
            )
        }
        return BundleMetadata(
            run_config=run.to_dict(), plugins=plugins, model_class=self.adapter.model_class(),
            model_fingerprint=self.adapter.fingerprint(), tap=self.tap, schedule=schedule,
            stage_boundaries=list(run.plugins.router.boundaries), channels=self.adapter.tap_channels(self.tap),
            extra=dict(extra or {}),
        )

    def components(self, observer: Callable[[StepEvent], None] | None = None, *,
                   make_policy: Callable[[], Any] | None = None, guard_non_finite: bool | None = None,
                   ) -> RuntimeComponents:
        """What the adapter's runtime needs; ``make_policy`` / ``guard_non_finite`` replace the run's
        (collection and full-compute references compute every step)."""
        return RuntimeComponents(
            predictor=self.predictor,
            make_policy=make_policy or self.run.plugins.make_policy,
            router=self.run.plugins.router,
            tap=self.tap,
            guard_non_finite=self.run.config.guard_non_finite if guard_non_finite is None else guard_non_finite,
            observer=observer,
        )


def assemble(model: nn.Module, run: ConfigLike | ResolvedRun = None, *, host: PluginHost | None = None,
             predictor: Predictor | None = None) -> Assembly:
    """Bind ``run`` to ``model`` and build its predictor (a bundle's weights loaded strictly), on the
    model's device, in eval mode without gradients.

    :param run: a resolved run, or anything :func:`lesa_core.run.resolve_run` accepts.
    :param predictor: use this predictor instead of building one (the trainer passes the one it fits).
    """
    host = host or get_plugin_host()
    binding = bind(model, resolve_run(run, host=host), host=host)
    if predictor is not None:
        return binding.with_predictor(predictor)
    bundle = binding.run.bundle
    if bundle is None:
        built = binding.build_predictor()
    else:  # refused before anything is allocated if the bundle's metadata asks for what its weights are not
        built = build_and_load(bundle.path, bundle.metadata, binding.build_predictor)
    return binding.with_predictor(built.to(model_device(model)).eval().requires_grad_(False))
