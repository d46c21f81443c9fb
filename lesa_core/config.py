"""Run configuration: one YAML/TOML file (or dict) composes a whole run.

User-facing shape::

    adapter: auto                 # or a registered adapter name
    tap: hidden                   # optional; the adapter's default otherwise
    predictor: {name: taylor, order: 2}
    router: {name: threshold, boundaries: [0.9, 0.5]}
    policy: {name: interval, interval: 7, warmup: 3}
    training: {...}               # see TrainingConfig

A predictor, router or policy left out means the **registered default** of that kind (the plugin
distribution that registered itself with ``default=True``; ``lesa plugins`` shows which). The core
names no plugin.

Validation has two phases: :func:`load_config` checks the shape (unknown keys are errors), then
:func:`resolve_plugins` fills in the defaults, looks each plugin name up in the plugin host and
validates its parameters with the plugin's own ``Config`` model. Errors are
:class:`~lesa_core.errors.ConfigError` naming the file, the dotted field path and what is allowed.
How the layers of a run (model defaults, bundle, config file, command-line flags) merge into one
config is :mod:`lesa_core.run`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lesa_core.errors import ConfigError, UnknownPluginError
from lesa_core.interfaces import CachePolicy, PluginConfig, Predictor, StageRouter
from lesa_core.interfaces.predictor import PredictorConfig
from lesa_core.parsing import (
    DocumentError,
    check_bounds,
    parse_json,
    parse_toml,
    parse_yaml,
    read_text,
    short_repr,
)

if TYPE_CHECKING:
    from lesa_core.plugins import PluginHost
    from lesa_core.registry import Registry


class PluginSpec(BaseModel):
    """A plugin name plus its parameters, written inline: ``{name: taylor, order: 2}``.

    A bare string (``predictor: taylor``) means the plugin with default parameters.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @property
    def params(self) -> dict[str, Any]:
        """The parameters (every key but ``name``)."""
        return dict(self.model_extra or {})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


class PhaseConfig(BaseModel):
    """One training phase (stage 1: teacher forcing; stage 2: closed loop)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(1, ge=0, description="passes over the training trajectories; 0 skips the phase")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False,
                      description="AdamW learning rate (cosine-decayed to 10% over the phase)")
    batch_size: int = Field(64, ge=1, description="forecast steps per optimiser update")


class ClosedLoopConfig(PhaseConfig):
    """Stage 2 (closed loop): ``batch_size`` prompts are sampled per rollout with the predictor attached.

    ``update`` says when the predictor learns from a rollout:

    * ``replay`` (default): the rollout runs with the current predictor and records, at every forecast
      step, the history the runtime really had (real features of the drifting trajectory, and the
      predictor's own forecasts in ``steps`` mode) next to the uncached ground truth; then
      ``replay_epochs`` shuffled passes over those forecast steps take one batched L1 update each.
      Every update sees every prompt of the rollout and the steps come in random order.
    * ``online`` (the reference release's): one L1 update at each forecast step, during the rollout,
      in step order.
    """

    update: Literal["replay", "online"] = "replay"
    replay_epochs: int = Field(2, ge=1, description="passes over a rollout's forecast steps (update: replay)")
    loss: Literal["tap", "output", "guided"] = Field(
        "guided", description="stage 2's error measure: 'guided' (default: the tap error of a cond/uncond pair "
        "combined as the sampler combines the branches, uncond + g (cond - uncond), with the collection's "
        "guidance scale, so that errors the branches share cancel as they do in the sampler; the tap error on "
        "runs without true CFG and under update: online, which sees the contexts one at a time), 'tap' (L1 "
        "between forecast and true tap, per guidance branch) or 'output' (L1 of the two mapped through the "
        "adapter's tap head to the model output; needs a tap with a head, as training.loss: latent does). "
        "'guided' at lr 1e-3 turned the video model's stage 2 from 28.00 to 29.67 dB on validation and left the "
        "FLUX- and Qwen-class bundles bit-identical (docs/training.md)")


STAGE1_RECIPE = PhaseConfig(epochs=6, lr=3e-3, batch_size=24)
"""Stage 1 of the one recipe (``training.stage1``); a partial ``stage1`` block changes only the keys it names."""
STAGE2_RECIPE = ClosedLoopConfig(epochs=1, lr=1e-3, batch_size=12)
"""Stage 2 of the one recipe (``training.stage2``); a partial ``stage2`` block changes only the keys it names."""

DEFAULT_SOURCE_PROMPTS = 24
"""Prompts trained on when a run takes a model source's own prompts and sets no ``training.num_prompts``."""
AUTO_TOKEN_SUBSAMPLE = 32
"""Tokens kept per sample by ``training.token_subsample: auto`` on a (batch, tokens, channels) tap."""


class TrainingConfig(BaseModel):
    """How to collect trajectories and train a learned predictor.

    The defaults are **the one recipe** for every model (docs/training.md): the sizes are the library's,
    not a model's — 24 training prompts of a model source plus a validation slice of 8, 32 tokens per
    sample, stage 1 6 epochs, stage 2 1 epoch; the best epoch on the validation slice is kept, and the
    forecasters of ``start`` are a floor under it (:mod:`lesa_core.trainer.selection`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: list[str] | str | None = Field(
        None, description="training prompts: a list, a text file (one per line), or None for the model's defaults"
    )
    num_prompts: int | None = Field(
        None, ge=1, description="the prompts trained on: the first N (default: all of a given list, "
        f"{DEFAULT_SOURCE_PROMPTS} of a model source's own prompts, which then also give the validation slice)")
    num_steps: int = Field(50, ge=2, description="denoising steps of the collected trajectories")
    seed: int = Field(0, description="base seed: prompt i uses seed + i; training shuffles with seed")
    data_dir: str = Field("lesa-data", description="where trajectory shards and checkpoints are written")
    collect_batch: int = Field(
        4, ge=1, description="prompts per pipeline call during collection, in fixed groups (prompts kB to kB + B - 1), "
        "so that a trajectory depends only on its group: resumed and sharded collections stay byte-identical; a "
        "store keeps the group size it was begun with. Lower it if one call of B prompts does not fit in memory")
    token_subsample: int | Literal["auto"] | None = Field(
        "auto", description="keep this many randomly chosen tokens per sample (bounds memory, disk and training "
        f"time); 'auto': {AUTO_TOKEN_SUBSAMPLE} on a (batch, tokens, channels) tap, all on any other; null: all")

    @field_validator("stage1", "stage2", mode="before")
    @classmethod
    def _over_the_recipe(cls, value: Any, info: ValidationInfo) -> Any:
        """A stage block names only what it changes: ``stage1: {epochs: 3}`` keeps the recipe's learning rate
        and batch size (not the phase class's generic ones, which it silently took before 2026-12-03)."""
        if isinstance(value, Mapping):
            recipe = STAGE1_RECIPE if info.field_name == "stage1" else STAGE2_RECIPE
            return {**recipe.model_dump(), **value}
        return value

    @field_validator("token_subsample")
    @classmethod
    def _positive_tokens(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("token_subsample must be at least 1, 'auto' or null (all tokens)")
        return value

    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False)
    clip_grad_norm: float = Field(1.0, gt=0, allow_inf_nan=False)
    loss: Literal["tap", "guided", "latent"] = Field(
        "tap", description="stage 1's error measure: 'tap' (the paper's: L1 between forecast and true tap at "
        "every forecast step, per guidance branch), 'guided' (the same, a cond/uncond pair's errors combined as "
        "the sampler combines the branches, uncond + g (cond - uncond), with the collection's guidance scale; "
        "'tap' on runs without true CFG) or 'latent' (L1 of the latent error the forecasts between two full passes "
        "leave at the next one: through the tap's output projection, combined over the guidance "
        "contexts, summed over the sampler's steps; needs a tap the adapter can map to the output)")
    schedules: Literal["auto"] | list[dict[str, Any]] = Field(
        default_factory=list, description="other full-step schedules both stages train on beside the run's "
        "policy, so that one bundle serves them: a list of parameter overrides of the run's policy (e.g. "
        "[{interval: 7}] on a run at interval 4); 'auto' asks the policy for its neighbours (interval N: also "
        "ceil(1.5 N)); [] (default) trains on the run's schedule only: a mix lost 0.5-1.3 dB on the run's own "
        "schedule in 4 of 7 measurements and did not lift N = 10 from an N = 7 run (docs/training.md); it pays "
        "for a bundle run at intervals much longer than it was trained for. Validation and selection stay on "
        "the run's policy")
    stage1: PhaseConfig = STAGE1_RECIPE
    stage2: ClosedLoopConfig = STAGE2_RECIPE
    validation_prompts: int = Field(
        8, ge=0, description="the last prompts of the collection (at most a quarter of them; drawn in addition "
        "to num_prompts from a model source's own prompts) are a validation "
        "slice, not trained on: the trainer scores closed-loop rollouts of them (final latent against full "
        "compute) to pick the start, keep the best epoch and never return a predictor worse than its start; "
        "0 turns selection off")
    start: list[PluginSpec] = Field(
        default_factory=lambda: [PluginSpec(name="taylor", order=0), PluginSpec(name="taylor", order=1),
                                 PluginSpec(name="taylor", order=2), PluginSpec(name="linear"),
                                 PluginSpec(name="linear", taps=2), PluginSpec(name="linear", taps=8)],
        description="the training-free (or closed-form) forecasters the result must not fall below: each is "
        "scored on the validation slice; training starts from the family's own initialisation, and if its best "
        "epoch scores below the best of these, `floor` says what happens (families that can start from "
        "coefficients only; an unregistered name is skipped with a warning); [] skips the floor. The closed-form "
        "`linear` fit comes with 2, 3 and 8 taps: how much history helps differs between models (docs/training.md)")
    refine_policy: int = Field(
        48, ge=0, description="closed-loop samplings of the collection's prompts (training and validation) that "
        "may refine a fitted policy (one whose schedule is searched after training, e.g. `learned`): the fitted "
        "schedule and a few even ones are scored, then the best one's full steps are moved a step or two at a "
        "time while that raises the closed-loop score (the teacher-forced search alone chose schedules 4.6 dB "
        "worse on the collection; docs/training.md). Each sampling costs about B / S of the collection's model "
        "time (B full passes of S steps); 0 keeps the teacher-forced fit. Policies that fit nothing ignore it")
    floor: Literal["keep", "reproduce"] = Field(
        "keep", description="when training ends below the best `start` candidate on the validation slice: the "
        "family is first set to reproduce that candidate's coefficients (kept if it scores better); if the "
        "result still scores below the candidate, `keep` returns the candidate itself (the bundle holds its "
        "family, e.g. `linear`, exactly as scored), `reproduce` returns the family's best weights anyway (its "
        "family and any-step-count time encoding kept, at the cost of the validation score). A policy fitted after "
        "training (learned, adaptive) always reproduces: its steps are searched for a predictor that runs on any "
        "schedule")


class RunConfig(BaseModel):
    """The whole run: which adapter, tap, predictor, router, policy, and how to train."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        None, description="model for the CLI: 'embedded', a local pipeline folder or a hub id"
    )
    bundle: str | None = Field(
        None, description="trained bundle (folder or Hub id): its predictor, router and tap; other fields set "
        "here override the bundle's (e.g. another policy interval)"
    )
    adapter: str = Field("auto", description="'auto' or a registered adapter name")
    tap: str | None = Field(None, min_length=1, description="tap to forecast; None (or left out) = the adapter's "
                            "default")
    predictor: PluginSpec | None = Field(None, description="the forecaster; None = the registered default predictor")
    router: PluginSpec | None = Field(None, description="time to stage; None = the registered default router")
    policy: PluginSpec | None = Field(None, description="compute or forecast; None = the registered default policy")
    guard_non_finite: bool = Field(True, description="fall back to a full step on a non-finite forecast")
    training: TrainingConfig = TrainingConfig()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :func:`load_config` accepts back."""
        data = self.model_dump(mode="json", exclude=set(PLUGIN_KINDS))
        for kind in PLUGIN_KINDS:
            spec: PluginSpec | None = getattr(self, kind)
            data[kind] = None if spec is None else spec.as_dict()
        return data


PLUGIN_KINDS = ("predictor", "router", "policy")
"""The run-config fields that name a plugin (``{name: ..., **params}``)."""


# ----------------------------------------------------------------------------- loading


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "bytes", "dict", "list", "tuple", "set"})


def _is_field_part(part: str) -> bool:
    """``False`` for the union-member tags pydantic puts in error locations (``constrained-int``,
    ``tuple[constrained-int, ...]``, ``function-after[...]``, ``str``): they are not config keys."""
    return (part.isidentifier() or part.isdigit()) and part not in _TYPE_TAGS


def _format_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    problems: dict[str, list[str]] = {}
    for err in exc.errors():
        raw = [str(p) for p in err["loc"]]
        loc = [p for p in raw if _is_field_part(p)]
        if err["type"] == "extra_forbidden" and raw and (not loc or loc[-1] != raw[-1]):
            loc.append(raw[-1])  # the unknown key itself, whatever it looks like ('', ';', 'str')
        path = _bounded(".".join([prefix, *loc] if prefix else loc), 200)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            message = f"unknown key {short_repr(loc[-1])}; allowed keys here: {', '.join(allowed)}"
        elif err["type"] == "missing" and loc:
            hint = " with a registered plugin name (`lesa plugins` lists them)" if loc[-1] == "name" else ""
            message = f"Field required: add the key '{loc[-1]}'{hint} (got {short_repr(err.get('input'))})"
        else:
            message = f"{err['msg']} (got {short_repr(err.get('input'))})"
        if message not in problems.setdefault(path, []):
            problems[path].append(message)  # one line per path: the members of a union are alternatives
    return [(path, "; or ".join(messages)) for path, messages in problems.items()]


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return sorted(getattr(current, "model_fields", {}))


MAX_LISTED_PROBLEMS = 8
"""A validation error lists at most this many problems (the rest are counted)."""


def _raise_from(exc: ValidationError, model: type[BaseModel], source: str | None, prefix: str = "") -> None:
    problems = _format_validation_error(exc, model, prefix)
    path, message = problems[0]
    shown = problems[1:MAX_LISTED_PROBLEMS]
    more = "".join(f"\n  - at '{p}': {m}" for p, m in shown)
    if len(problems) > MAX_LISTED_PROBLEMS:
        more += f"\n  - and {len(problems) - MAX_LISTED_PROBLEMS} more problems"
    raise ConfigError(message + more, source=source, path=path) from None


CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
"""The file extensions of run configs (any other path names a bundle folder or Hub id)."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML, TOML or JSON file into a dict (no validation), strictly and within bounds
    (:mod:`lesa_core.parsing`: duplicate keys refused, aliases bounded, nesting and size bounded).

    :raises ConfigError: if the file is missing, unreadable, malformed, out of bounds, or not a mapping.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError("this is a folder, not a file; pass the path of a .yaml, .toml or .json run config "
                          "(a bundle folder goes to `attach` or the `bundle:` key)", source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        raise ConfigError("this is a safetensors weights file, not a run config; pass the bundle folder that holds "
                          "it next to its lesa_bundle.json (or a .yaml, .toml or .json run config)", source=str(path))
    if not path.is_file():
        raise ConfigError("file not found; pass the path of a .yaml, .toml or .json run config", source=str(path))
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"unsupported extension {short_repr(suffix)}; use .yaml, .yml, .toml or .json",
                          source=str(path))
    try:
        text = read_text(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 text ({exc}); save the run config as UTF-8",
                          source=str(path)) from None
    except DocumentError as exc:
        raise ConfigError(f"{exc}; pass a run config, not another file", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc}); check its permissions", source=str(path)) from None
    language = {".toml": "TOML", ".json": "JSON"}.get(suffix, "YAML")
    try:
        data = {".toml": parse_toml, ".json": parse_json}.get(suffix, parse_yaml)(text)
    except DocumentError as exc:
        raise ConfigError(f"the file {exc}; fix the {language} (write each key once, spell out shared "
                          "values)", source=str(path)) from None
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError
        raise ConfigError(f"the file does not parse: {_bounded(str(exc))}; fix the {language} syntax at that "
                          "position", source=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of keys, got {type(data).__name__}; write keys such as "
                          "`predictor: {name: taylor}` at the top level", source=str(path))
    return data


def _bounded(text: str, limit: int = 400) -> str:
    """``text`` cut to ``limit`` characters (parser messages may quote whole lines)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} characters more)"


def load_config(source: RunConfig | Mapping[str, Any] | str | Path | None = None, *,
                origin: str | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from an instance, a dict, or a YAML/TOML/JSON file path.

    Plugin parameters are *not* validated here (see :func:`resolve_plugins`); layers are not merged
    here (see :func:`lesa_core.run.resolve_run`).

    :param origin: where a dict came from (named in errors; a file path names itself).
    :raises ConfigError: on any shape error, naming the file and the field path.
    """
    if source is None:
        return RunConfig()
    if isinstance(source, RunConfig):
        return source
    if isinstance(source, (str, Path)):
        origin = str(source)
        data: Mapping[str, Any] = read_config_file(source)
    elif isinstance(source, Mapping):
        data = source
        try:
            check_bounds(dict(data))
        except DocumentError as exc:
            raise ConfigError(f"the config {exc}; write a flat run config", source=origin) from None
    else:
        raise ConfigError(f"a run config must be a RunConfig, a dict or a file path, not {type(source).__name__}")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        _raise_from(exc, RunConfig, origin)
        raise AssertionError("unreachable") from None


# ----------------------------------------------------------------------------- plugin resolution


@dataclass(frozen=True)
class ResolvedPlugins:
    """The plugin classes of a run with their validated parameter models."""

    predictor_cls: type[Predictor]
    predictor_config: PredictorConfig
    router: StageRouter
    policy_cls: type[CachePolicy]
    policy_config: PluginConfig

    def make_policy(self) -> CachePolicy:
        """A fresh policy instance (the runtime keeps one per cache context)."""
        return self.policy_cls(self.policy_config)

    @property
    def policy_factory(self) -> Callable[[], CachePolicy]:
        return self.make_policy


def _validate_params(kind: str, spec: PluginSpec, cls: type[Any], source: str | None) -> Any:
    config_cls: type[BaseModel] = getattr(cls, "Config", PluginConfig)
    try:
        return config_cls.model_validate(spec.params)
    except ValidationError as exc:
        _raise_from(exc, config_cls, source, prefix=kind)
        raise AssertionError("unreachable") from None


def with_default_plugins(config: RunConfig, host: PluginHost, *, source: str | None = None) -> RunConfig:
    """``config`` with every plugin spec it leaves out (``None``) set to the registered default of that
    kind, with default parameters.

    :raises ConfigError: if no installed plugin is the default of a kind the config leaves out.
    """
    registries: dict[str, Registry[Any]] = {"predictor": host.predictors, "router": host.routers,
                                            "policy": host.policies}
    missing: dict[str, PluginSpec] = {}
    for kind in PLUGIN_KINDS:
        if getattr(config, kind) is not None:
            continue
        default = registries[kind].default
        if default is None:
            names = ", ".join(registries[kind].names()) or "none installed"
            raise ConfigError(f"no {kind} is named and no installed plugin is the default {kind}; name one "
                              f"(registered: {names})", source=source, path=kind)
        missing[kind] = PluginSpec(name=default)
    return config.model_copy(update=missing) if missing else config


def resolve_plugins(config: RunConfig, host: PluginHost | None = None, *, source: str | None = None) -> ResolvedPlugins:
    """Look up the run's plugins (the registered defaults where it names none) and validate their
    parameters.

    :raises ConfigError: for an unknown plugin name (listing the registered ones) or bad parameters.
    """
    if host is None:
        from lesa_core.plugins import get_plugin_host

        host = get_plugin_host()
    config = with_default_plugins(config, host, source=source)
    assert config.predictor is not None and config.router is not None and config.policy is not None
    try:
        predictor_cls = host.predictors.get(config.predictor.name)
        router_cls = host.routers.get(config.router.name)
        policy_cls = host.policies.get(config.policy.name)
    except UnknownPluginError as exc:
        field = {"predictor": "predictor", "router": "router", "policy": "policy"}[exc.kind]
        raise ConfigError(str(exc), source=source, path=f"{field}.name") from None
    predictor_config = _validate_params("predictor", config.predictor, predictor_cls, source)
    router_config = _validate_params("router", config.router, router_cls, source)
    policy_config = _validate_params("policy", config.policy, policy_cls, source)
    if config.adapter != "auto" and config.adapter not in host.adapters:
        raise ConfigError(str(UnknownPluginError("adapter", config.adapter, host.adapters.names())),
                          source=source, path="adapter")
    router = router_cls(router_config)
    try:  # cross-field constraints between the plugins (a value per stage vs the router's stages)
        predictor_cls.check_config(predictor_config, router.num_stages)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (router '{config.router.name}' has {router.num_stages} stage(s))",
                          source=source, path=exc.path or "predictor") from None
    return ResolvedPlugins(predictor_cls, predictor_config, router, policy_cls, policy_config)
