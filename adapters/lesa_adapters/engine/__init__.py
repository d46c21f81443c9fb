"""The LESA runtime on diffusers transformers, and the declarative base class of their adapters.

This package is the **only** code of the project that touches diffusers' hook internals
(``HookRegistry``, ``ModelHook``, ``StateManager``, ``CacheContext``, the private
``StateManager._context`` and ``_state_cache``, a module's ``_diffusers_hook``). Its behaviour is
pinned to diffusers 0.42.x (:data:`SUPPORTED_DIFFUSERS`). diffusers itself is imported lazily, when a
runtime is attached, so loading the adapter plugins is cheap. The public names are re-exported by
:mod:`lesa_adapters`; this package itself exports nothing, so that importing one of its modules loads
only what that module needs.

Modules, one job each:

* :mod:`~lesa_adapters.engine.declarations` — the public declarative API: :class:`DiffusersBackbone`
  (subclass it and declare, as class attributes, which model classes it claims, the block lists
  forming the body, where each block class takes and returns its streams (:class:`BlockIO`), its taps
  (:class:`BodyOutputTap`, :class:`ModuleOutputTap`, :class:`ModelOutputTap`) and the timestep scale;
  ``attach`` is inherited) and :func:`standard_taps`.
* :mod:`~lesa_adapters.engine.names` — the hook-name constants, the default context, the supported
  diffusers versions.
* :mod:`~lesa_adapters.engine.attachment` — :class:`DiffusersAttachment`: installs and removes the
  hooks, reports statistics, resets, and runs each step (below).
* :mod:`~lesa_adapters.engine.state` — one trajectory per cache context, the bookkeeping of one call,
  the flags the leader sets for the other hooks.
* :mod:`~lesa_adapters.engine.hooks` — the hook classes on diffusers' ``ModelHook`` (imports
  diffusers; imported only when a runtime attaches).
* :mod:`~lesa_adapters.engine.registries` — public access to diffusers' hook registries for code that
  drives diffusers' own caches: :func:`hook_names`, :func:`hook_states`, :func:`reset_stateful_hooks`.
* :mod:`~lesa_adapters.engine.arguments` — reading a forward call's arguments.

How one step runs
-----------------

A *leader* hook replaces the transformer's ``forward`` (``ModelHook.new_forward``). Per call it

1. finds the per-context state (``StateManager``; a ``"default"`` context when the caller set none),
2. detects a new trajectory (see *Reset* below) and asks the context's :class:`CachePolicy` once,
3. on a forecast step builds a :class:`ForecastInput` from the context's history and forecasts under
   ``torch.no_grad()``; with ``guard_non_finite`` a non-finite forecast turns the step into a full one,
4. runs the model: on a full step normally (the tap is recorded); on a forecast step with the body
   reduced to pass-throughs — every body block returns its inputs at its output positions, the stem
   modules listed in :attr:`DiffusersBackbone.forecast_skips` return their first argument — and the
   forecast substituted at the tap (``hidden``: the last block's image-stream output; ``normed``: the
   output of ``norm_out``); for a :class:`ModelOutputTap` the whole forward is skipped and the forecast
   is returned in the model's return format (``return_dict`` honoured),
5. appends the tap to the history (at most ``predictor.history_size`` entries; forecasts too in
   ``"steps"`` history mode), updates the statistics and calls the observer.

In :class:`DiffusersAttachment` steps 1–3 are ``_begin`` and ``_decide``'s named steps
(``_read_step``, ``_restart_if_new_trajectory``, ``_ask_policy``, ``_forecast`` with its guard
``_rejects``, ``_prepare_full_step``, ``_arm``); step 5 is ``_end``.

Reading t on the host
---------------------

The policy gets ``StepInfo.t`` only when it is known on the host without a device synchronisation:
from ``CacheContext.sigma`` (the flow time, which diffusers' Wan pipelines and
:func:`lesa_core.sampler.sample` provide), or from the ``timestep`` argument when it is a CPU tensor.
Otherwise ``t`` is ``None`` for the decision and is read (one ``.item()``-like sync) only on full steps,
where the body dominates, for ``Predictor.check_time`` and new-loop detection. Forecast steps never
read a device value on the host (with ``guard_non_finite: false``; the guard itself needs one sync).

Reset
-----

A context starts a new trajectory (history, policy and statistics of the old one are dropped; the
statistics are kept as a snapshot) when

* the pipeline ends a call: every diffusers pipeline calls ``_reset_stateful_cache()`` at the end
  (``maybe_free_model_hooks``), which reaches the leader's ``reset_state``;
* ``CacheContext.step_index`` is 0 or does not increase, or ``num_inference_steps`` changes;
* t (when known on the host) jumps back up, or — with no step index — repeats the trajectory's only
  step (a call that ended after its first step, e.g. by an exception in a step callback);
* the latent's shape or device changes (a new resolution or batch size);
* a forward call raises (Ctrl-C, out of memory, a bad argument, a schedule mismatch): the trajectory
  cannot go on, so the next call starts a fresh one;
* the user calls ``handle.reset()``.

A bare loop on a GPU that passes no ``cache_context`` step information and never resets can only be
detected on full steps; use :func:`lesa_core.sampler.sample`, ``cache_context(name, step_index=i)``
or ``handle.reset()`` between trajectories.
"""
