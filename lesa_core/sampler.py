"""A generic flow-matching Euler loop for bare transformers (no pipeline needed).

:func:`sample` drives a diffusers-style transformer through ``num_inference_steps`` steps of
``FlowMatchEulerDiscreteScheduler``. It shares the LESA runtime with pipelines: attach first, then
sample::

    handle = lesa_core.attach(transformer, config)
    latents = sample(transformer, noise, {"encoder_hidden_states": text, ...}, 28,
                     adapter=handle.assembly.adapter)

Each call is wrapped in ``transformer.cache_context(name, step_index=i, num_inference_steps=n,
timestep=..., sigma=...)`` when the model has one, so the runtime knows the step, the step count and
the flow time (``sigma``) on the host without a device synchronisation, and starts a new trajectory at
step 0. The host copies of the schedule are made once, before the loop.

diffusers is imported inside the function; importing this module is cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lesa_core.interfaces import BackboneAdapter

__all__ = ["sample"]


def _adapter_for(transformer: nn.Module) -> BackboneAdapter:
    from lesa_core.plugins import get_plugin_host

    return get_plugin_host().resolve_adapter(transformer)(transformer)


def _context(transformer: nn.Module, name: str, **fields: Any) -> contextlib.AbstractContextManager[Any]:
    cache_context = getattr(transformer, "cache_context", None)
    return cache_context(name, **fields) if callable(cache_context) else contextlib.nullcontext()


def _call(transformer: nn.Module, latents: Tensor, timestep: Tensor, kwargs: Mapping[str, Any],
          adapter: BackboneAdapter) -> Tensor:
    out = transformer(**{**kwargs, adapter.latent_argument: latents, adapter.timestep_argument: timestep},
                      return_dict=False)
    return out[0] if isinstance(out, (tuple, list)) else out


def sample(
    transformer: nn.Module,
    latents: Tensor,
    model_kwargs: Mapping[str, Any],
    num_inference_steps: int,
    scheduler: Any = None,
    adapter: BackboneAdapter | None = None,
    mu: float | None = None,
    *,
    negative_model_kwargs: Mapping[str, Any] | None = None,
    guidance_scale: float = 1.0,
    context: str = "cond",
) -> Tensor:
    """Denoise ``latents`` with ``num_inference_steps`` flow-matching Euler steps.

    :param transformer: a diffusers-style transformer (its forward takes the latent and timestep
        arguments named by the adapter and ``return_dict``); attach LESA to it first if wanted.
        A ``torch.compile`` d module works too (attributes such as ``cache_context`` pass through).
    :param latents: the initial noise, in the layout the transformer takes.
    :param model_kwargs: every other forward argument (text embeddings, ids, masks, ...).
    :param num_inference_steps: the number of steps.
    :param scheduler: a ``FlowMatchEulerDiscreteScheduler`` (or compatible); a default one if ``None``.
        Its ``set_timesteps`` is called here.
    :param adapter: converts flow time to the ``timestep`` argument (``timestep_from_time``) and names
        the arguments; resolved through the plugin host when ``None``.
    :param mu: the resolution-dependent shift, for schedulers with ``use_dynamic_shifting``.
    :param negative_model_kwargs: if given with ``guidance_scale != 1``, a second, unconditional call
        per step (cache context ``"uncond"``) and classifier-free guidance.
    :param guidance_scale: the CFG scale.
    :param context: the cache-context name of the conditional call.
    :return: the denoised latents.
    """
    if scheduler is None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler()
    if adapter is None:
        adapter = _adapter_for(transformer)
    set_kwargs: dict[str, Any] = {"device": latents.device}
    if mu is not None:
        set_kwargs["mu"] = mu
    scheduler.set_timesteps(num_inference_steps, **set_kwargs)
    timesteps: Tensor = scheduler.timesteps
    sigmas: Tensor = scheduler.sigmas.to(latents.device)
    host_timesteps = [float(t) for t in timesteps.tolist()]  # one transfer, before the loop
    host_sigmas = [float(s) for s in sigmas.tolist()]
    n = len(host_timesteps)
    batch = latents.shape[0]
    cfg = negative_model_kwargs is not None and guidance_scale != 1.0
    with torch.no_grad():
        for i in range(n):
            flow_t = sigmas[i].to(torch.float32).expand(batch)
            timestep = adapter.timestep_from_time(flow_t).to(latents.dtype)
            fields = {"step_index": i, "num_inference_steps": n, "timestep": host_timesteps[i],
                      "sigma": host_sigmas[i]}
            with _context(transformer, context, **fields):
                velocity = _call(transformer, latents, timestep, model_kwargs, adapter)
            if cfg:
                assert negative_model_kwargs is not None
                with _context(transformer, "uncond", **fields):
                    uncond = _call(transformer, latents, timestep, negative_model_kwargs, adapter)
                velocity = uncond + guidance_scale * (velocity - uncond)
            latents = scheduler.step(velocity, timesteps[i], latents, return_dict=False)[0]
    return latents
