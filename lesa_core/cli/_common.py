"""Shared plumbing of the workflow commands: model, run config, prompts, device."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from lesa_core.config import RunConfig, load_config, read_config_file
from lesa_core.errors import ConfigError
from lesa_core.interfaces.model import ModelSource

DEFAULT_MODEL = "embedded"
CALL_DEFAULTS_FILE = "lesa_call.json"
"""Optional file in a pipeline folder: the pipeline call's keyword arguments (see
:class:`PretrainedPipelineSource`)."""


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--model``, ``--device``, ``--data-dir``, ``--quiet``."""
    parser.add_argument("--config", metavar="FILE", help="run config (YAML/TOML/JSON); default: the model's own")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help=f"a registered model source (see `lesa plugins`) or a local diffusers pipeline folder; "
                             f"default: the config's `model`, else '{DEFAULT_MODEL}'")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (under torchrun, 'cuda' means cuda:LOCAL_RANK)")
    parser.add_argument("--data-dir", metavar="DIR", help="trajectories and checkpoints (default: training.data_dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


class PretrainedPipelineSource(ModelSource):
    """Any local diffusers pipeline folder (``DiffusionPipeline.from_pretrained``).

    The pipeline is called with its own defaults unless the folder holds ``lesa_call.json``: a JSON
    object of call keyword arguments (e.g. ``{"height": 512, "width": 512, "guidance_scale": 3.5,
    "max_sequence_length": 256}``) used by ``lesa collect``, ``train``, ``sample`` and ``demo``. They are
    recorded with the collected trajectories, so collection and closed-loop training agree.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"diffusers pipeline at {path}"

    def call_defaults(self) -> dict[str, Any]:
        """The keyword arguments of ``lesa_call.json`` in the pipeline folder, else none.

        :raises ConfigError: if the file is not a JSON object.
        """
        import json

        file = Path(self.path) / CALL_DEFAULTS_FILE
        if not file.is_file():
            return {}
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a JSON object of pipeline call arguments, got {type(data).__name__}")
        return data

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(self.path, torch_dtype=dtype)
        return pipe.to(device)


def resolve_model_source(name: str | None) -> ModelSource:
    """A registered model source by name, or a pipeline folder by path.

    :raises ConfigError: listing the registered model sources when neither fits.
    """
    from lesa_core.plugins import get_plugin_host

    name = name or DEFAULT_MODEL
    host = get_plugin_host()
    if name in host.models:
        return host.models.get(name)()
    if Path(name).is_dir():
        if not (Path(name) / "model_index.json").is_file():
            raise ConfigError(
                f"model folder '{name}' holds no model_index.json, so it is not a diffusers pipeline; pass a folder "
                "written by the pipeline's save_pretrained() (or a registered model source)"
            )
        return PretrainedPipelineSource(name)
    raise ConfigError(
        f"model '{name}' is neither a registered model source ({', '.join(host.models.names()) or 'none installed'}) "
        "nor a local pipeline folder; pass --model with one of those"
    )


def run_config(args: argparse.Namespace, source: ModelSource | None = None) -> RunConfig:
    """The run config: ``--config`` if given (layered over the model's defaults), else the model's defaults."""
    base: dict[str, Any] = dict(source.default_config()) if source is not None else {}
    if getattr(args, "config", None):
        user = read_config_file(args.config)
        base = {**base, **user}
        try:
            return load_config(base)
        except ConfigError as exc:
            raise ConfigError(str(exc).split(": ", 1)[-1], source=args.config, path=exc.path) from None
    return load_config(base)


def model_name(args: argparse.Namespace, config: RunConfig | None = None) -> str:
    return getattr(args, "model", None) or (config.model if config is not None else None) or DEFAULT_MODEL


def read_prompts(value: list[str] | str | None, fallback: list[str]) -> list[str]:
    """Prompts from a list, a text file (one per line), or the fallback."""
    if value is None:
        return list(fallback)
    if isinstance(value, list):
        return value
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"prompt file '{value}' not found; give a text file with one prompt per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def training_prompts(config: RunConfig, source: ModelSource) -> list[str]:
    """The run's training prompts: ``training.prompts`` (a list or a file) or the model's own, cut to
    ``training.num_prompts``."""
    prompts = read_prompts(config.training.prompts, source.train_prompts())
    return prompts[: config.training.num_prompts] if config.training.num_prompts else prompts


def resolve_run(args: argparse.Namespace) -> tuple[ModelSource, RunConfig, str]:
    """The run config (``--config`` over the model's defaults) and the model source it names (``--model``,
    else the config's ``model``, else the default), with that source's name."""
    config = run_config(args, resolve_model_source(args.model))
    name = model_name(args, config)
    return resolve_model_source(name), config, name


def load_run(args: argparse.Namespace, device: str | torch.device) -> tuple[ModelSource, RunConfig, Any, list[str]]:
    """What ``collect`` and ``train`` start from: the model source, the run config (``--config`` over the
    model's defaults), the loaded pipeline on ``device``, and the training prompts."""
    source, config, _ = resolve_run(args)
    pipe = source.load(device)
    return source, config, pipe, training_prompts(config, source)
