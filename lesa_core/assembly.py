"""Assemble a run and attach it to a model: :func:`attach` is the one front door of inference.

``attach(target, config)`` accepts a diffusers pipeline (its ``transformer`` is used) or a transformer,
and a run config (object, dict, YAML/TOML path) or a bundle (folder or Hub id). It resolves the
plugins, picks the adapter, builds the predictor (loading the bundle's weights strictly) and asks the
adapter to attach. The returned :class:`LesaHandle` is a context manager; ``remove()`` restores the
model exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn

from lesa_core.bundle import (
    BUNDLE_CONFIG_NAME,
    BundleMetadata,
    check_fits,
    is_bundle,
    load_weights,
    read_metadata,
    resolve_bundle_path,
)
from lesa_core.composite import build_predictor
from lesa_core.config import ResolvedPlugins, RunConfig, load_config, resolve_plugins
from lesa_core.errors import AttachError, BundleCorruptError, ConfigError, UnsupportedModelError
from lesa_core.interfaces import Attachment, BackboneAdapter, Predictor, RuntimeComponents, StepEvent
from lesa_core.plugins import PluginHost, get_plugin_host

ConfigLike = RunConfig | Mapping[str, Any] | str | Path | None


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


@dataclass
class Assembly:
    """Everything a run needs, built but not attached (the trainer uses this directly)."""

    config: RunConfig
    plugins: ResolvedPlugins
    adapter: BackboneAdapter
    tap: str
    predictor: Predictor
    bundle: BundleMetadata | None = None
    source: str | None = None

    def bundle_metadata(self, host: PluginHost, *, schedule: list[float] | None,
                        extra: dict[str, Any] | None = None) -> BundleMetadata:
        """The metadata a bundle of this run's predictor records (plugins with their distributions,
        model class and fingerprint, tap, schedule, stage boundaries, the run config)."""
        plugins = {
            kind: {"name": entry.name, "distribution": entry.distribution, "version": entry.version}
            for kind, entry in (
                ("predictor", host.predictors.entry(self.config.predictor.name)),
                ("router", host.routers.entry(self.config.router.name)),
                ("policy", host.policies.entry(self.config.policy.name)),
            )
        }
        return BundleMetadata(
            run_config=self.config.to_dict(), plugins=plugins, model_class=self.adapter.model_class(),
            model_fingerprint=self.adapter.fingerprint(), tap=self.tap, schedule=schedule,
            stage_boundaries=list(self.plugins.router.boundaries), channels=self.adapter.tap_channels(self.tap),
            extra=dict(extra or {}),
        )

    def components(self, observer: Callable[[StepEvent], None] | None = None) -> RuntimeComponents:
        return RuntimeComponents(
            predictor=self.predictor,
            make_policy=self.plugins.make_policy,
            router=self.plugins.router,
            tap=self.tap,
            guard_non_finite=self.config.guard_non_finite,
            observer=observer,
        )


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def assemble(model: nn.Module, config: ConfigLike = None, *, host: PluginHost | None = None,
             load_bundle_weights: bool = True, predictor: Predictor | None = None) -> Assembly:
    """Resolve plugins and adapter for ``model`` and build the predictor (see :func:`attach`).

    :param predictor: use this predictor instead of building one (the trainer passes the one it fits).
    """
    host = host or get_plugin_host()
    bundle_meta: BundleMetadata | None = None
    bundle_dir: Path | None = None
    source: str | None = None
    if isinstance(config, (str, Path)) and (is_bundle(config) or not Path(config).suffix):
        bundle_dir = resolve_bundle_path(config)
        bundle_meta = read_metadata(bundle_dir)
        source = str(bundle_dir)
        run = bundle_run_config(bundle_meta, bundle_dir)
    else:
        source = str(config) if isinstance(config, (str, Path)) else None
        run = load_config(config)
        if run.bundle is not None:
            bundle_dir = resolve_bundle_path(run.bundle)
            bundle_meta = read_metadata(bundle_dir)
            run = _overlay_on_bundle(run, bundle_run_config(bundle_meta, bundle_dir), source)
    plugins = resolve_plugins(run, host, source=source)
    if run.adapter == "auto":
        adapter_cls = host.resolve_adapter(model)
    else:
        adapter_cls = host.adapters.get(run.adapter)
        if not adapter_cls.claims(model):
            raise UnsupportedModelError(
                f"adapter '{run.adapter}' does not handle {type(model).__qualname__}; use adapter: auto "
                f"or one of the registered adapters: {', '.join(host.adapters.names())}"
            )
    adapter = adapter_cls(model)
    tap = run.tap or adapter.default_tap
    try:
        adapter.check_tap(tap)
    except ValueError as exc:
        raise ConfigError(str(exc), source=source, path="tap") from None
    if predictor is not None:
        return Assembly(run, plugins, adapter, tap, predictor, bundle_meta, source)
    predictor = build_predictor(plugins.predictor_cls, plugins.predictor_config, plugins.router,
                                adapter.tap_channels(tap))
    if bundle_meta is not None and bundle_dir is not None:
        check_fits(bundle_meta, model_class=adapter.model_class(), fingerprint=adapter.fingerprint(), tap=tap,
                   source=str(bundle_dir))
        if load_bundle_weights:
            load_weights(bundle_dir, predictor, bundle_meta)
    predictor = predictor.to(_model_device(model)).eval().requires_grad_(False)
    return Assembly(run, plugins, adapter, tap, predictor, bundle_meta, source)


def bundle_run_config(meta: BundleMetadata, bundle_dir: Path) -> RunConfig:
    """The run config stored in a bundle.

    :raises BundleCorruptError: if it is not a valid run config (the metadata was edited, or written
        by an incompatible lesa version).
    """
    try:
        return load_config(meta.run_config)
    except ConfigError as exc:
        raise BundleCorruptError(
            f"{bundle_dir / BUNDLE_CONFIG_NAME}: the stored run_config is not a valid run config ({exc}); "
            "the metadata was edited or written by an incompatible lesa version — re-export the bundle"
        ) from None


def _overlay_on_bundle(user: RunConfig, trained: RunConfig, source: str | None) -> RunConfig:
    """The bundle's run config with the fields the user set explicitly (predictor and router excluded:
    they are what the weights were trained as)."""
    for name in ("predictor", "router"):
        if name in user.model_fields_set and getattr(user, name) != getattr(trained, name):
            raise ConfigError(
                f"the bundle's {name} is {getattr(trained, name).as_dict()}; a run config that loads it cannot "
                f"change it — drop '{name}' from the config or train a new bundle",
                source=source, path=name,
            )
    overrides = {k: getattr(user, k) for k in user.model_fields_set if k not in ("predictor", "router", "bundle")}
    data = trained.to_dict()
    for key, value in overrides.items():
        data[key] = value.as_dict() if hasattr(value, "as_dict") else (
            value.model_dump(mode="json") if hasattr(value, "model_dump") else value)
    return load_config(data)


class LesaHandle:
    """A live LESA attachment. Use as a context manager or call :meth:`remove`.

    :ivar assembly: the assembled run (config, adapter, predictor, plugins).
    """

    def __init__(self, attachment: Attachment, assembly: Assembly) -> None:
        self._attachment = attachment
        self.assembly = assembly
        self._removed = False

    @property
    def predictor(self) -> Predictor:
        return self.assembly.predictor

    @property
    def config(self) -> RunConfig:
        return self.assembly.config

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per cache context: full and forecast steps of the most recent trajectory, timings, cache bytes."""
        return self._attachment.stats()

    def reset(self) -> None:
        """Forget every trajectory in progress."""
        self._attachment.reset()

    def remove(self) -> None:
        """Detach from the model; it then behaves bit-identically to before. Idempotent."""
        if not self._removed:
            self._attachment.remove()
            self._removed = True

    @property
    def attached(self) -> bool:
        return not self._removed

    def __enter__(self) -> LesaHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


def attach(target: Any, config: ConfigLike = None, *, host: PluginHost | None = None,
           observer: Callable[[StepEvent], None] | None = None, predictor: Predictor | None = None) -> LesaHandle:
    """Accelerate ``target`` (a diffusers pipeline or transformer) with the run described by ``config``.

    :param target: a pipeline with a ``transformer`` component, or the transformer itself.
    :param config: a :class:`RunConfig`, a dict, a YAML/TOML/JSON path, or a bundle folder / Hub id.
        ``None`` means the defaults (training-free Taylor order 1, interval 7, warm-up 3).
    :param observer: called with a :class:`~lesa_core.interfaces.StepEvent` after every step
        (trajectory collection and closed-loop training use it).
    :param predictor: use this (already built) predictor instead of building one from the config.
    :return: a :class:`LesaHandle`; ``with attach(pipe, cfg): pipe(...)`` detaches on exit.
    :raises UnsupportedModelError: if no adapter claims the model (naming the registered ones).
    :raises ConfigError, BundleError: for bad configs or bundles that do not fit.
    :raises AttachError: if LESA (or another cache) is already attached to the model.
    """
    model = find_transformer(target)
    if getattr(model, "is_cache_enabled", False):
        raise AttachError(
            f"{type(model).__qualname__} already has a diffusers cache enabled; call `disable_cache()` first"
        )
    assembly = assemble(model, config, host=host, predictor=predictor)
    attachment = assembly.adapter.attach(assembly.components(observer))
    return LesaHandle(attachment, assembly)
