"""Model sources: what the workflow commands run on — a registered :class:`ModelSource` by name, or any
local diffusers pipeline folder.

``resolve_model_source(None)`` gives the registered default model source (the distribution that
registered one with ``default=True``; the core names none).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lesa_core.config import DEFAULT_SOURCE_PROMPTS, TrainingConfig
from lesa_core.errors import ConfigError
from lesa_core.interfaces.model import ModelSource
from lesa_core.parsing import parse_json, read_text, short_repr

if TYPE_CHECKING:
    from lesa_core.plugins import PluginHost

__all__ = ["CALL_DEFAULTS_FILE", "PretrainedPipelineSource", "read_prompts", "resolve_model_source", "training_prompts"]

CALL_DEFAULTS_FILE = "lesa_call.json"
"""Optional file in a pipeline folder: the pipeline call's keyword arguments (see
:class:`PretrainedPipelineSource`)."""


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
        file = Path(self.path) / CALL_DEFAULTS_FILE
        if not file.is_file():
            return {}
        fix = ("write it as a JSON object of the pipeline's call arguments, e.g. {\"height\": 512, \"width\": 512}, "
               "or delete it")
        try:
            data = parse_json(read_text(file))
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError, DocumentError
            raise ConfigError(f"{file}: not valid JSON ({short_repr(str(exc))}); {fix}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a JSON object of pipeline call arguments, got {type(data).__name__}; "
                              f"{fix}")
        bad = [key for key in data if not key.isidentifier()]
        if bad:
            raise ConfigError(f"{file}: {short_repr(bad[0])} is not a call argument name; {fix}")
        if "prompt" in data or "num_inference_steps" in data or "generator" in data:
            raise ConfigError(f"{file}: prompt, num_inference_steps and generator are set by LESA (prompts, "
                              "training.num_steps, seeds); remove them from the file")
        return data

    def load(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(self.path, dtype=dtype)  # torch_dtype is deprecated (warns)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError, RuntimeError) as exc:
            raise ConfigError(f"the pipeline folder '{self.path}' could not be loaded ({type(exc).__name__}: "
                              f"{short_repr(str(exc))}); check that it was written by the pipeline's "
                              "save_pretrained() and is complete") from None
        return pipe.to(device)


def resolve_model_source(name: str | None, *, host: PluginHost | None = None) -> tuple[str, ModelSource]:
    """A registered model source by name (the registered default for ``None``), or a pipeline folder by
    path; returned with the name it goes by.

    :raises ConfigError: listing the registered model sources when neither fits.
    """
    if host is None:
        from lesa_core.plugins import get_plugin_host

        host = get_plugin_host()
    registered = ", ".join(host.models.names()) or "none installed"
    if name is None:
        name = host.models.default
        if name is None:
            raise ConfigError(f"no model is named and no installed model source is the default (registered: "
                              f"{registered}); pass --model with a model source or a pipeline folder")
    if name in host.models:
        return name, host.models.get(name)()
    if Path(name).is_dir():
        if not (Path(name) / "model_index.json").is_file():
            raise ConfigError(
                f"model folder '{name}' holds no model_index.json, so it is not a diffusers pipeline; pass a folder "
                "written by the pipeline's save_pretrained() (or a registered model source)"
            )
        return name, PretrainedPipelineSource(name)
    raise ConfigError(
        f"model '{name}' is neither a registered model source ({registered}) nor a local pipeline folder; "
        "pass --model with one of those"
    )


def read_prompts(value: list[str] | str | None, fallback: list[str]) -> list[str]:
    """Prompts from a list, a text file (one per line), or the fallback."""
    if value is None:
        return list(fallback)
    if isinstance(value, list):
        return value
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"prompt file '{value}' not found; give a text file with one prompt per line")
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"prompt file '{value}' cannot be read ({short_repr(str(exc))}); give a UTF-8 text file "
                          "with one prompt per line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def training_prompts(training: TrainingConfig, source: ModelSource) -> list[str]:
    """A run's collection prompts: ``training.prompts`` (a list or a file) cut to ``training.num_prompts``;
    or the model source's own, ``training.num_prompts`` (default
    :data:`~lesa_core.config.DEFAULT_SOURCE_PROMPTS`) of them plus the validation slice
    (``training.validation_prompts``, at most a third as many: the trainer keeps at most a quarter of the
    collection for it, :func:`~lesa_core.trainer.selection.validation_count`)."""
    if training.prompts is not None:
        prompts = read_prompts(training.prompts, [])
        return prompts[: training.num_prompts] if training.num_prompts else prompts
    count = training.num_prompts or DEFAULT_SOURCE_PROMPTS
    return list(source.train_prompts())[: count + min(training.validation_prompts, count // 3)]


def held_out_samples(source: ModelSource, count: int) -> tuple[list[str], list[int]]:
    """``count`` held-out samples of ``source`` for the benchmarks: prompt ``i mod n`` of its ``n`` held-out
    prompts with seed 10 000 + i. With ``count ≤ n`` these are the first ``count`` prompts, one seed each; a
    source with fewer held-out prompts gives each several seeds (the video model's 16 captions × 4 seeds = 64
    samples). Seeds from 10 000 never meet a collection's (0, 1, …).

    :raises ConfigError: if the source has no held-out prompts or ``count < 1``.
    """
    prompts = list(source.eval_prompts())
    if not prompts or count < 1:
        raise ConfigError(
            f"need at least one held-out prompt and one sample: the model source has {len(prompts)} held-out "
            f"prompt(s) and {count} sample(s) were asked for"
        )
    return [prompts[i % len(prompts)] for i in range(count)], [10_000 + i for i in range(count)]
