"""Shared helpers of the runtime integration tests: the plugin host, the pipeline families, configs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lesa_core.plugins import PluginHost
from lesa_core.testing import tiny

HAS_WAN_EXAMPLE = importlib.util.find_spec("lesa_example_wan") is not None


def plugin_modules() -> list[object]:
    import lesa_adapters.flux
    import lesa_adapters.hunyuan_video
    import lesa_adapters.qwen_image
    import lesa_predictors.kan
    import lesa_predictors.taylor
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.threshold

    modules: list[object] = [lesa_predictors.taylor, lesa_predictors.kan, lesa_schedulers.policies.interval, lesa_schedulers.routers.threshold,
                             lesa_adapters.flux, lesa_adapters.qwen_image, lesa_adapters.hunyuan_video]
    if HAS_WAN_EXAMPLE:
        import lesa_example_wan

        modules.append(lesa_example_wan)
    return modules


def make_host() -> PluginHost:
    """A host with the built-ins and the adapters, independent of installed entry points."""
    return PluginHost.create(autoload=False, plugins=plugin_modules())


def run_config(interval: int = 7, warmup: int = 3, *, tap: str | None = None, order: int = 1,
               force_full: tuple[int, ...] = (3,), **policy: Any) -> dict[str, Any]:
    return {"tap": tap, "predictor": {"name": "taylor", "order": order},
            "router": {"name": "threshold", "boundaries": []},
            "policy": {"name": "interval", "interval": interval, "warmup": warmup,
                       "force_full": list(force_full), **policy}}


@dataclass
class Family:
    """One backbone: how to build its tiny pipeline and call it."""

    name: str
    build: Callable[[], Any]
    kwargs: dict[str, Any]
    size: tuple[int, int]
    other_size: tuple[int, int]
    contexts: tuple[str, ...]
    taps: tuple[str, ...] = ("hidden", "normed", "output")
    extra: dict[str, Any] = field(default_factory=dict)

    def pipeline(self) -> Any:
        pipe = self.build()
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def call(self, pipe: Any, steps: int, size: tuple[int, int] | None = None, seed: int = 0) -> torch.Tensor:
        height, width = size or self.size
        out = pipe(**self.kwargs, num_inference_steps=steps, height=height, width=width, output_type="latent",
                   generator=torch.Generator().manual_seed(seed))
        return out[0]


FAMILIES: dict[str, Family] = {
    "flux": Family("flux", tiny.tiny_flux_pipeline,
                   dict(prompt="a red circle", guidance_scale=5.0, max_sequence_length=16),
                   (32, 32), (48, 32), ("cond",)),
    "qwen_image": Family("qwen_image", tiny.tiny_qwen_image_pipeline,
                         dict(prompt="a red circle", negative_prompt="blurry", true_cfg_scale=4.0,
                              max_sequence_length=16),
                         (32, 32), (48, 48), ("cond", "uncond")),
    "hunyuan_video": Family("hunyuan_video", tiny.tiny_hunyuan_video_pipeline,
                            dict(prompt="a red circle", num_frames=1, max_sequence_length=16,
                                 prompt_template={"template": "{}", "crop_start": 0}),
                            (16, 16), (32, 16), ("cond",)),
}
if HAS_WAN_EXAMPLE:
    FAMILIES["wan"] = Family("wan", tiny.tiny_wan_pipeline,
                             dict(prompt="a red circle", negative_prompt="blurry", guidance_scale=4.0,
                                  num_frames=1, max_sequence_length=16),
                             (32, 32), (48, 32), ("cond", "uncond"), taps=("hidden", "output"))


def inner_module(block: nn.Module) -> nn.Module:
    """A submodule that runs only when ``block`` really computes (its attention)."""
    for name in ("attn", "attn1"):
        module = getattr(block, name, None)
        if isinstance(module, nn.Module):
            return module
    raise AttributeError(f"no attention module in {type(block).__name__}")


def body_blocks(transformer: nn.Module) -> list[nn.Module]:
    blocks: list[nn.Module] = []
    for name in ("transformer_blocks", "single_transformer_blocks", "blocks"):
        stack = getattr(transformer, name, None)
        if isinstance(stack, nn.ModuleList):
            blocks.extend(stack)
    return blocks


class ExecutionCounter:
    """Counts real executions of the first and last body blocks per transformer call, with plain torch
    forward hooks (independent of LESA's statistics)."""

    def __init__(self, transformer: nn.Module) -> None:
        self.call = -1
        self.executed: dict[str, list[int]] = {"first": [], "last": []}
        blocks = body_blocks(transformer)
        self._handles = [transformer.register_forward_pre_hook(self._on_call)]
        for key, block in (("first", blocks[0]), ("last", blocks[-1])):
            self._handles.append(inner_module(block).register_forward_hook(self._recorder(key)))

    def _on_call(self, module: nn.Module, args: Any) -> None:
        self.call += 1

    def _recorder(self, key: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            self.executed[key].append(self.call)

        return record

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def probe_host() -> PluginHost:
    """:func:`make_host` plus the ``probe`` predictor."""
    import lesa_predictors.probe

    return PluginHost.create(autoload=False, plugins=[*plugin_modules(), lesa_predictors.probe])


def four_block_flux_pipeline() -> Any:
    """The tiny FLUX pipeline with a four-block body (2 double-stream, 2 single-stream), progress bar off."""
    pipe = tiny.tiny_flux_pipeline()
    pipe.register_modules(transformer=tiny.tiny_flux_transformer(0, num_layers=2, num_single_layers=2))
    pipe.set_progress_bar_config(disable=True)
    return pipe
