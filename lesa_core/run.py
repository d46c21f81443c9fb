"""One resolution per run: every layer that says something about a run, merged once into one frozen
object that every command takes.

The layers, lowest precedence first::

    model-source defaults  <  bundle  <  config file (or dict)  <  command-line flags

* **Deep merge.** Mappings merge key by key at every depth (a ``training:`` block in a config file
  changes only the keys it names); lists and scalars replace. A plugin spec (``predictor``, ``router``,
  ``policy``) merges into the one below only when it names the same plugin or no plugin; naming
  another plugin replaces the whole spec (``{name: taylor}`` over ``{name: kan, taps: [...]}`` is
  Taylor with its own defaults, not Taylor with KAN's parameters). A bare string ``predictor: taylor``
  means ``{name: taylor}``.
* **The bundle** (a folder or Hub id, given as the config itself, as its ``bundle:`` key or as a flag)
  contributes the run config it was trained with. Its ``predictor`` and ``router`` are what the
  weights were trained as: a higher layer that changes them is an error; every other field (the
  policy's interval, say) may be overridden.
* **Defaults.** A kind the merged config leaves out gets the registered default plugin of that kind.

:func:`resolve_run` is the only function that reads and merges these layers; :class:`ResolvedRun` is
what it returns — frozen, with every plugin looked up and its parameters validated. Derived runs (the
trainer filling in the collected schedule, a benchmark's variant) come from :meth:`ResolvedRun.derive`,
which validates only what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesa_core.bundle import BUNDLE_CONFIG_NAME, BundleMetadata, is_bundle, read_metadata, resolve_bundle_path
from lesa_core.config import (
    CONFIG_SUFFIXES,
    PLUGIN_KINDS,
    PluginSpec,
    ResolvedPlugins,
    RunConfig,
    load_config,
    read_config_file,
    resolve_plugins,
    with_default_plugins,
)
from lesa_core.errors import BundleCorruptError, ConfigError

if TYPE_CHECKING:
    from lesa_core.plugins import PluginHost

__all__ = ["BundleRef", "ConfigLike", "ResolvedRun", "bundle_run_config", "deep_merge", "resolve_run"]

ConfigLike = RunConfig | Mapping[str, Any] | str | Path | None
"""What the front doors accept as a run: a config object, a dict, a YAML/TOML/JSON path, a bundle
folder or Hub id, or ``None`` (the registered defaults). A :class:`ResolvedRun` is accepted too."""


@dataclass(frozen=True)
class BundleRef:
    """A trained bundle a run loads its predictor from: the folder and its checked metadata."""

    path: Path
    metadata: BundleMetadata


@dataclass(frozen=True)
class ResolvedRun:
    """A run with every layer merged, every plugin looked up and every parameter validated.

    :ivar config: the merged config; its plugin specs are all set (defaults filled in).
    :ivar plugins: the plugin classes with their validated parameter models.
    :ivar bundle: the bundle whose weights the predictor loads, if any.
    :ivar origin: where the run came from (the config file or bundle folder), for messages.
    """

    config: RunConfig
    plugins: ResolvedPlugins
    bundle: BundleRef | None = None
    origin: str | None = None

    @property
    def predictor(self) -> PluginSpec:
        return _spec(self.config, "predictor")

    @property
    def router(self) -> PluginSpec:
        return _spec(self.config, "router")

    @property
    def policy(self) -> PluginSpec:
        return _spec(self.config, "policy")

    def to_dict(self) -> dict[str, Any]:
        """The merged config as a JSON-serialisable dict (what a bundle records)."""
        return self.config.to_dict()

    def derive(self, *, host: PluginHost | None = None, **changes: Any) -> ResolvedRun:
        """This run with top-level fields replaced (plugin specs as dicts or :class:`PluginSpec`).

        The bundle is kept unless ``changes`` replace the predictor or router it was trained as (the
        result then trains or runs its own predictor, and loads no weights).

        :raises ConfigError: if a changed field is invalid.
        """
        if not changes:
            return self
        data = self.config.to_dict()
        for key, value in changes.items():
            data[key] = value.as_dict() if isinstance(value, PluginSpec) else value
        config = load_config(data)
        keeps_weights = all(getattr(config, k) == getattr(self.config, k) for k in _TRAINED_KINDS)
        bundle = self.bundle if keeps_weights else None
        if bundle is None:
            config = config.model_copy(update={"bundle": None})
        return ResolvedRun(config, resolve_plugins(config, _host(host), source=self.origin), bundle, self.origin)


def _spec(config: RunConfig, kind: str) -> PluginSpec:
    spec: PluginSpec | None = getattr(config, kind)
    if spec is None:  # pragma: no cover - a ResolvedRun is built with every spec set
        raise AssertionError(f"unresolved {kind}")
    return spec


def _host(host: PluginHost | None) -> PluginHost:
    if host is not None:
        return host
    from lesa_core.plugins import get_plugin_host

    return get_plugin_host()


# ----------------------------------------------------------------------------- merging


def _as_spec_dict(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base`` by the rules of the module docstring (neither argument is modified)."""
    merged: dict[str, Any] = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if key in PLUGIN_KINDS:
            value, below = _as_spec_dict(value), _as_spec_dict(below)
            if (isinstance(value, Mapping) and isinstance(below, Mapping)
                    and value.get("name", below.get("name")) != below.get("name")):
                below = None  # another plugin: its parameters do not carry over
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _user_layer(config: RunConfig | Mapping[str, Any] | str | Path | None) -> tuple[dict[str, Any], str | None]:
    """The config-file layer as a plain dict, with where it came from."""
    if config is None:
        return {}, None
    if isinstance(config, RunConfig):
        return _explicit_fields(config), None
    if isinstance(config, (str, Path)):
        return read_config_file(config), str(config)
    if isinstance(config, Mapping):
        return dict(config), None
    raise ConfigError(f"a run config must be a RunConfig, a dict, a file path or a bundle, not {type(config).__name__}")


def _explicit_fields(config: RunConfig) -> dict[str, Any]:
    """The fields of a config object that were set explicitly (its defaults are no layer of their own)."""
    data = config.to_dict()
    return {key: data[key] for key in config.model_fields_set}


def _looks_like_bundle(config: Any) -> bool:
    """A path that names a bundle rather than a config file: a bundle folder, or a path without a run-config
    (or weights-file) extension that is not an existing file — a folder, a missing folder such as
    ``kan-v1.2``, a Hub id ``owner/name``."""
    if not isinstance(config, (str, Path)):
        return False
    path = Path(config)
    if is_bundle(path):
        return True
    if path.suffix.lower() in (*CONFIG_SUFFIXES, ".safetensors"):
        return False
    return not path.is_file()


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


_TRAINED_KINDS = ("predictor", "router")
"""The plugin kinds a bundle's weights were trained as."""


def _check_bundle_kinds(trained: RunConfig, merged: RunConfig, user_layers: list[Mapping[str, Any]],
                        origin: str | None) -> None:
    """Refuse a higher layer that changes the predictor or router a bundle's weights were trained as."""
    for kind in _TRAINED_KINDS:
        if any(kind in layer for layer in user_layers) and getattr(merged, kind) != getattr(trained, kind):
            spec = getattr(trained, kind)
            raise ConfigError(
                f"the bundle's {kind} is {spec.as_dict() if spec else None}; a run config that loads it cannot "
                f"change it — drop '{kind}' from the config or train a new bundle",
                source=origin, path=kind,
            )


# ----------------------------------------------------------------------------- the one resolution


def resolve_run(config: ConfigLike | ResolvedRun = None, *, bundle: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None, model_defaults: Mapping[str, Any] | None = None,
                origin: str | None = None, host: PluginHost | None = None) -> ResolvedRun:
    """Merge the layers of a run once (module docstring) and resolve its plugins.

    :param config: the config layer — a :class:`RunConfig`, a dict, a YAML/TOML/JSON file — or a bundle
        (a bundle folder, or a path without extension: a folder or Hub id; then it is the bundle layer).
        A :class:`ResolvedRun` is returned as it is when no other layer is given.
    :param bundle: the bundle layer, named explicitly (a ``bundle:`` key in a higher layer wins).
    :param overrides: the command-line layer (nested like a config: ``{"training": {"data_dir": d}}``).
    :param model_defaults: the model source's recommended config (the lowest layer).
    :param origin: where a dict ``config`` was read from (named in errors).
    :raises ConfigError: for a malformed layer, an unknown plugin or bad parameters, naming the field.
    :raises BundleError: for a bundle that cannot be read.
    """
    if isinstance(config, ResolvedRun):
        if not overrides and not model_defaults and bundle is None:
            return config
        config = config.config
    host = _host(host)
    bundle_path: str | Path | None = bundle
    user: dict[str, Any] = {}
    if bundle is None and isinstance(config, (str, Path)) and _looks_like_bundle(config):
        bundle_path = config
    else:
        user, read_from = _user_layer(config)
        origin = origin or read_from
    flags = dict(overrides or {})
    bundle_path = flags.get("bundle") or user.get("bundle") or bundle_path
    ref: BundleRef | None = None
    trained: RunConfig | None = None
    merged = dict(model_defaults or {})
    if bundle_path is not None:
        folder = resolve_bundle_path(bundle_path)
        ref = BundleRef(folder, read_metadata(folder))
        trained = bundle_run_config(ref.metadata, folder)
        stored = ref.metadata.run_config
        # the bundle's predictor and router are exactly what its weights were trained as: they replace
        # the specs below instead of merging into them
        merged = deep_merge({k: v for k, v in merged.items() if k not in _TRAINED_KINDS},
                            {**stored, "bundle": str(bundle_path)})
        origin = origin or str(folder)
    for layer in (user, flags):
        merged = deep_merge(merged, layer)
    run_config = load_config(merged, origin=origin)
    if trained is not None:
        _check_bundle_kinds(with_default_plugins(trained, host, source=origin),
                            with_default_plugins(run_config, host, source=origin), [user, flags], origin)
    run_config = with_default_plugins(run_config, host, source=origin)
    plugins = resolve_plugins(run_config, host, source=origin)
    if trained is not None:
        _check_bundle_policy(with_default_plugins(trained, host, source=origin), run_config, plugins, origin)
    return ResolvedRun(run_config, plugins, ref, origin)


def _check_bundle_policy(trained: RunConfig, merged: RunConfig, plugins: ResolvedPlugins, origin: str | None) -> None:
    """Refuse another policy than the one a schedule-bound predictor's bundle was fitted for."""
    if plugins.predictor_cls.schedule_bound and merged.policy != trained.policy:
        stored = trained.policy.as_dict() if trained.policy else None
        raise ConfigError(
            f"this bundle's predictor ('{trained.predictor.name if trained.predictor else None}') was fitted per "
            f"step for the policy {stored}: its coefficients belong to those full steps and mean nothing on "
            "others; sample with that policy (drop 'policy'), fit it again for yours, or train with "
            "training.floor: reproduce for a predictor that runs on any schedule",
            source=origin, path="policy",
        )
