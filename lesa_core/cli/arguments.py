"""What the ``lesa`` sub-commands share: the common arguments and the one resolution of a command's run.

Public for plugin commands (``lesa_register_commands``)::

    def register(subparsers):
        parser = subparsers.add_parser("mine")
        add_common_arguments(parser)
        parser.set_defaults(func=run)

    def run(args):
        command = resolve_command_run(args)          # model source + the run, resolved once
        pipe = command.load_pipeline(args.device)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lesa_core.cli.values import default_device, device_name, int_at_least
from lesa_core.config import read_config_file
from lesa_core.interfaces.model import ModelSource
from lesa_core.run import ResolvedRun, deep_merge, resolve_run
from lesa_core.sources import resolve_model_source, training_prompts

__all__ = ["CommandRun", "add_batch_size_argument", "add_common_arguments", "note_batch_size", "resolve_command_run"]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--model``, ``--device``, ``--data-dir``, ``--threads``, ``--quiet`` (each value checked
    when parsed: :mod:`lesa_core.cli.values`; ``--threads`` and ``--quiet`` applied by
    :func:`lesa_core.cli.setup.prepare_command` before the command runs)."""
    parser.add_argument("--config", metavar="FILE", help="run config (YAML/TOML/JSON), merged over the model's own")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="a registered model source (see `lesa plugins`) or a local diffusers pipeline folder; "
                             "default: the config's `model`, else the registered default model")
    parser.add_argument("--device", type=device_name, default=default_device(),
                        help="torch device: cpu, cuda, cuda:N, mps (under torchrun, 'cuda' means cuda:LOCAL_RANK)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="trajectories and checkpoints (sets training.data_dir over the config)")
    parser.add_argument("--threads", type=int_at_least(1), metavar="N",
                        help="torch CPU threads (default: torch's, or 1 when a quick test shows the machine is too "
                             "busy for more)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (diffusers' and transformers' included)")


def add_batch_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, kept so that existing scripts still run: collection samples each prompt in a call
    of its own (its trajectory then does not depend on batch-mates), so the value changes nothing."""
    parser.add_argument("--batch-size", type=int_at_least(1), metavar="N",
                        help="deprecated and ignored: collection samples fixed groups of training.collect_batch "
                             "prompts per call (set that instead), so that trajectories do not depend on resuming")


def note_batch_size(args: argparse.Namespace) -> None:
    """Say once, on stderr, that ``--batch-size`` no longer changes anything (if it was given)."""
    if getattr(args, "batch_size", None) is not None:
        print("lesa: note: --batch-size is deprecated and ignored: collection samples fixed groups of "
              "training.collect_batch prompts per call (set that in the config instead), so that trajectories do not "
              "depend on resuming or sharding", file=sys.stderr)


@dataclass(frozen=True)
class CommandRun:
    """What a workflow command runs: the model source and the run, each resolved once.

    :ivar model: the model source's name (a registered name or a pipeline folder).
    :ivar source: the model source.
    :ivar run: the run — model defaults < bundle < ``--config`` < command-line flags, merged once.
    """

    model: str
    source: ModelSource
    run: ResolvedRun

    @property
    def call(self) -> dict[str, Any]:
        """The keyword arguments the model source's pipeline is called with."""
        return self.source.call_defaults()

    def training_prompts(self) -> list[str]:
        """``training.prompts`` (a list or a file) or the model's own, cut to ``training.num_prompts``."""
        return training_prompts(self.run.config.training, self.source)

    def load_pipeline(self, device: str | torch.device) -> Any:
        return self.source.load(device)


def _flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The run-config fields set by command-line flags."""
    layer: dict[str, Any] = {}
    if getattr(args, "model", None):
        layer["model"] = args.model
    if getattr(args, "bundle", None):
        layer["bundle"] = args.bundle
    if getattr(args, "data_dir", None):
        layer["training"] = {"data_dir": str(args.data_dir)}
    return layer


def resolve_command_run(args: argparse.Namespace, *, overrides: Mapping[str, Any] | None = None) -> CommandRun:
    """The model source (``--model``, else the config's ``model``, else the registered default) and the
    run (:func:`lesa_core.run.resolve_run` over that source's defaults), each resolved once.

    :param overrides: more command-line fields, above every other layer.
    """
    config_file = getattr(args, "config", None)
    user = read_config_file(config_file) if config_file else {}
    flags = deep_merge(_flag_layer(args), dict(overrides or {}))
    model, source = resolve_model_source(flags.get("model") or user.get("model"))
    run = resolve_run(user, origin=config_file, overrides=flags, model_defaults=source.default_config())
    return CommandRun(model, source, run)
