"""How the trainer runs the model: any object with ``run(prompts, seeds, num_steps)``.

:class:`PipelineRunner` drives a diffusers pipeline (duck-typed: it only calls it). Each prompt gets
its own CPU generator seeded ``seed``, so a prompt's initial noise does not depend on which batch it
is in, and collection, closed-loop training and evaluation see the same trajectories.

:func:`sample_scored` samples a batch and returns its output in the form validation compares (uint8
images for a pipeline, the output as float32 otherwise): collection keeps it per prompt, so that the
validation slice's full-compute reference is not sampled a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from lesa_core.errors import TrainingError
from lesa_core.metrics import to_uint8


class TrajectoryRunner(Protocol):
    """Runs full sampling trajectories; LESA's runtime, attached to the model, observes them."""

    @property
    def settings(self) -> dict[str, Any]:
        """The sampling call's settings (recorded with collected trajectories)."""
        ...

    def run(self, prompts: Sequence[str], seeds: Sequence[int], num_steps: int) -> Any:
        """Sample one trajectory per prompt (in one batch) and return the pipeline's output."""
        ...


class PipelineRunner:
    """Calls ``pipe(prompt=[...], num_inference_steps=S, generator=[...], **call_kwargs)``.

    :param pipe: a diffusers pipeline (or anything with the same call signature).
    :param call_kwargs: extra call arguments (height, width, guidance, ``output_type``...).
        ``output_type`` defaults to ``"latent"`` (no VAE decode) for collection and training.
    """

    def __init__(self, pipe: Any, **call_kwargs: Any) -> None:
        self.pipe = pipe
        self.call_kwargs = {"output_type": "latent", **call_kwargs}

    @property
    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in sorted(self.call_kwargs.items()) if isinstance(v, (int, float, str, bool))}

    def run(self, prompts: Sequence[str], seeds: Sequence[int], num_steps: int, **overrides: Any) -> Any:
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        kwargs = {**self.call_kwargs, **overrides}
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        return self.pipe(prompt=list(prompts), num_inference_steps=num_steps, generator=generators, **kwargs)


def _payload(output: Any) -> Any:
    """A pipeline output's ``.images`` (image pipelines), else its ``.frames`` (video pipelines), else the value."""
    return next((getattr(output, name) for name in ("images", "frames") if hasattr(output, name)), output)


def tensor_output(output: Any) -> Tensor | None:
    """The sampled batch's final latents, images or videos from a runner's return value (its
    :func:`_payload`, a list of tensors stacked), float32; ``None`` if there is nothing tensor-like."""
    value = _payload(output)
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        value = torch.stack(list(value)) if value[0].dim() > 0 and len(value) > 1 else value[0]
    return value.detach().float() if isinstance(value, Tensor) else None


def final_output(output: Any) -> Tensor:
    """:func:`tensor_output`, required.

    :raises TrainingError: if the runner returned nothing tensor-like.
    """
    value = tensor_output(output)
    if value is None:
        raise TrainingError(
            "validation needs the runner's output as a tensor (latents or images), got "
            f"{type(_payload(output)).__name__}; "
            "sample with output_type 'latent' or 'pt', or set training.validation_prompts: 0"
        )
    return value


def scoring_space(runner: TrajectoryRunner) -> str:
    """``image`` when ``runner`` drives a pipeline (decoded images, scored by uint8 PSNR: what the benchmarks
    report), else ``latent`` (the runner's output, scored by SNR)."""
    return "image" if isinstance(runner, PipelineRunner) else "latent"


def sample_scored(runner: TrajectoryRunner, prompts: Sequence[str], seeds: Sequence[int], num_steps: int, *,
                  required: bool = True) -> Tensor | None:
    """Sample ``prompts`` in one batch and return the output as validation scores it: a pipeline's decoded
    images (``output_type="pt"``) as uint8, rounded as PIL rounds; any other runner's output as float32.

    :param required: raise :class:`TrainingError` when the output is not tensor-like (else return ``None``).
    """
    extract: Callable[[Any], Tensor | None] = final_output if required else tensor_output
    if isinstance(runner, PipelineRunner):  # image space: decoded, rounded as PIL rounds
        value = extract(runner.run(prompts, seeds, num_steps, output_type="pt"))
        return None if value is None else to_uint8(value)
    return extract(runner.run(prompts, seeds, num_steps))
