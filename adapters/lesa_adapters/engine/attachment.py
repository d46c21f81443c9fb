"""The runtime attached to one diffusers transformer: installs and removes the hooks, and runs the
per-step logic the leader hook hands it (see the package docstring for how one step runs)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lesa_adapters.engine.arguments import argument, parameter_positions
from lesa_adapters.engine.declarations import (
    BodyOutputTap,
    DiffusersBackbone,
    ModelOutputTap,
    ModuleOutputTap,
)
from lesa_adapters.engine.names import BLOCK_HOOK, DEFAULT_CONTEXT, LEADER_HOOK, STEM_HOOK, TAP_HOOK
from lesa_adapters.engine.registries import forget_registry, registry_of
from lesa_adapters.engine.state import Call, StepFlags
from lesa_core.errors import AttachError, ForwardInputError
from lesa_core.interfaces import Attachment, Decision, ForecastInput, RuntimeComponents, StepEvent, StepInfo
from lesa_core.replay import RecordedStep

if TYPE_CHECKING:
    from diffusers.hooks.hooks import CacheContext, ModelHook

    from lesa_adapters.engine.hooks import LeaderHook

__all__ = ["DiffusersAttachment"]

logger = logging.getLogger("lesa")


class DiffusersAttachment(Attachment):
    """The runtime attached to one diffusers transformer instance (see :mod:`lesa_adapters.engine`).

    :raises AttachError: if LESA is already attached to the model, or the adapter's declarations do
        not fit it.
    """

    def __init__(self, adapter: DiffusersBackbone, components: RuntimeComponents) -> None:
        from lesa_adapters.engine import hooks  # imports diffusers

        self.adapter = adapter
        self.model = model = adapter.model
        self.components = components
        self.predictor = components.predictor
        self.history_size = int(self.predictor.history_size)
        if self.history_size < 1:
            raise AttachError(f"{type(self.predictor).__name__}.history_size must be >= 1")
        self.min_history = max(1, int(self.predictor.min_history))
        self.history_mode = self.predictor.history_mode
        self.guard = bool(components.guard_non_finite)
        self.observer: Callable[[StepEvent], None] | None = components.observer
        self.replay = components.replay
        self.tap = adapter.check_tap(components.tap)
        self.tap_spec = adapter.taps[self.tap]
        self.skips_forward = isinstance(self.tap_spec, ModelOutputTap)
        self._finished: dict[str, dict[str, Any]] = {}
        self._step_scalars: dict[torch.device, Tensor] = {}
        self._warned_non_finite = False
        self._removed = False
        self.shared = StepFlags()
        self.shared.probe_at = self._probe_index(adapter, components)
        self._default_context: CacheContext = hooks.CacheContext(DEFAULT_CONTEXT)

        positions, defaults = parameter_positions(model)
        self._latent = (adapter.latent_argument, positions.get(adapter.latent_argument))
        self._timestep = (adapter.timestep_argument, positions.get(adapter.timestep_argument))
        self._return_dict = ("return_dict", positions.get("return_dict"))
        self._return_dict_default = bool(defaults.get("return_dict", True))
        self._positions = positions
        self._extra_arguments = tuple(adapter.extra_call_arguments)

        root = hooks.registry(model)
        if root.get_hook(LEADER_HOOK) is not None:
            raise AttachError(
                f"LESA is already attached to this {type(model).__qualname__}; remove the first attachment "
                "(handle.remove()) before attaching again"
            )
        self._installed: list[tuple[nn.Module, str, bool, bool]] = []
        self._chain_tops: dict[int, Any] = {}  # module id -> the forward the registry's chain put on it
        try:
            if not self.skips_forward:
                for name in adapter.forecast_skips:
                    self._install(model.get_submodule(name), hooks.StemHook(self.shared), STEM_HOOK)
                blocks = adapter.body_blocks()
                tail = isinstance(self.tap_spec, BodyOutputTap)
                for i, block in enumerate(blocks):
                    is_tail = tail and i == len(blocks) - 1
                    self._install(block, hooks.BlockHook(self.shared, adapter.io_for(block), is_tail, i), BLOCK_HOOK)
                if isinstance(self.tap_spec, ModuleOutputTap):
                    try:
                        tapped = model.get_submodule(self.tap_spec.module)
                    except AttributeError as exc:
                        raise AttachError(f"tap '{self.tap}' names module '{self.tap_spec.module}': {exc}") from None
                    self._install(tapped, hooks.TapHook(self.shared), TAP_HOOK)
                elif not tail:
                    raise AttachError(f"tap '{self.tap}' is of unknown kind {type(self.tap_spec).__name__}")
            self.leader: LeaderHook = hooks.LeaderHook(self._forward, {
                "make_policy": components.make_policy, "history_size": self.history_size,
                "finished": self._finished})
            self._install(model, self.leader, LEADER_HOOK)
        except BaseException:
            self.remove()
            raise
        root.invalidate_child_registries_cache()

    def _probe_index(self, adapter: DiffusersBackbone, components: RuntimeComponents) -> int:
        """The index of the body block whose output is the probe (k − 1), or −1 when the predictor reads
        no probe (:attr:`~lesa_core.interfaces.Predictor.uses_probe`).

        :raises AttachError: for a probe with a tap that skips the whole forward, or a k the body cannot hold.
        """
        if not self.predictor.uses_probe:
            return -1
        if self.skips_forward:
            raise AttachError(
                f"predictor {type(self.predictor).__name__} reads a probe of the first body blocks, but tap "
                f"'{self.tap}' skips the whole forward on forecast steps; choose a body tap (e.g. 'hidden')"
            )
        return adapter.check_probe(self.predictor.probe_blocks) - 1

    @property
    def probe_blocks(self) -> int:
        """k, the body blocks a forecast step runs for real (0 without a probe)."""
        return self.shared.probe_at + 1

    def _install(self, module: nn.Module, hook: ModelHook, name: str) -> None:
        from lesa_adapters.engine.hooks import registry

        had_forward = "forward" in module.__dict__
        had_registry = registry_of(module) is not None
        registry(module).register_hook(hook, name)
        self._installed.append((module, name, had_forward, had_registry))
        self._chain_tops[id(module)] = module.__dict__["forward"]

    # -- Attachment ---------------------------------------------------------------------------
    def remove(self) -> None:
        """Remove every hook this attachment installed, leaving exactly the hooks that were there: diffusers
        hooks installed before or after it, and a wrapper that took over ``forward`` after it with the
        ``_old_forward`` convention (accelerate's offload hooks, e.g. ``enable_model_cpu_offload`` called
        after attaching), which keeps wrapping the model's forward."""
        if self._removed:
            return
        self._removed = True
        self.shared.clear()
        for module, name, had_forward, had_registry in reversed(self._installed):
            registry = registry_of(module)
            if registry is None:
                continue
            outer = None
            if registry.get_hook(name) is not None:
                outer = self._remove_hook(module, registry, name)
            if not registry.hooks:
                if not had_forward and outer is None and "forward" in module.__dict__:
                    del module.__dict__["forward"]
                if not had_registry and module is not self.model:
                    forget_registry(module)
        self._installed.clear()
        self._chain_tops.clear()
        root = registry_of(self.model)
        if root is not None:
            root.invalidate_child_registries_cache()

    def _remove_hook(self, module: nn.Module, registry: Any, name: str) -> Any:
        """Remove hook ``name`` from ``module``'s registry. If a wrapper following the ``_old_forward``
        convention (accelerate's ``add_hook_to_module``) took over ``forward`` after the registry's chain, the
        chain is unwound beneath it and the wrapper is kept on top, now wrapping what the chain restored.

        :return: that wrapper, or ``None`` when the registry's chain was on top.
        """
        top = self._chain_tops.get(id(module))
        current = module.__dict__.get("forward")
        outer = None
        if top is not None and current is not top and module.__dict__.get("_old_forward") is top:
            outer = current
            setattr(module, "forward", top)  # let the registry unwind its own chain  # noqa: B010
        registry.remove_hook(name, recurse=False)
        below = module.__dict__.get("forward")  # the registry puts back the forward it wrapped
        self._chain_tops[id(module)] = below
        if outer is not None:
            setattr(module, "_old_forward", below)  # noqa: B010
            setattr(module, "forward", outer)  # noqa: B010
        return outer

    def reset(self) -> None:
        if hasattr(self, "leader"):
            self.leader.reset()

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {name: dict(summary) for name, summary in self._finished.items()}
        if hasattr(self, "leader"):
            for state in self.leader.states():
                if state.steps_done and state.name is not None:
                    out[state.name] = state.summary()
        return out

    # -- one forward call ---------------------------------------------------------------------------
    def _forward(self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The leader's ``new_forward``: prepare the step, run the (reduced) model, record the tap."""
        call = self._begin(args, kwargs)
        try:
            result = call.output if call.output is not None else original(*args, **kwargs)
        except BaseException:
            self._abort(call)
            raise
        return self._end(call, result)

    @torch.compiler.disable
    def _begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        """Enter the call's cache context (the default one if the caller set none; an extra call's own
        one, see :meth:`_extra_context`) and decide the step; if deciding fails, the context's trajectory
        cannot go on and is reset."""
        started = time.perf_counter()
        leader = self.leader
        previous = leader.context()
        context = self._extra_context(previous or self._default_context, args, kwargs)
        owned = context is not previous
        if owned:
            leader.set_context(context)
        try:
            return self._decide(args, kwargs, owned, started, previous)
        except BaseException:
            self.shared.clear()
            leader.state().reset()  # the call failed: its trajectory cannot go on
            if owned:
                leader.set_context(previous)
            raise

    def _extra_context(self, context: CacheContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CacheContext:
        """``context``, or for an extra call of the step (one of the adapter's ``extra_call_arguments`` is
        set, e.g. SD3's ``skip_layers``) a context of its own, named ``<argument>`` (or
        ``<context>:<argument>`` under a caller's context), with the same step information: the extra
        calls form a trajectory of their own and never mix into the main one."""
        for name in self._extra_arguments:
            value = argument(args, kwargs, name, self._positions.get(name))
            if value is None or (isinstance(value, (list, tuple)) and not value):
                continue
            label = name if context is self._default_context else f"{context.name}:{name}"
            from lesa_adapters.engine.hooks import CacheContext

            return CacheContext(label, step_index=context.step_index, num_inference_steps=context.num_inference_steps,
                                timestep=context.timestep, sigma=context.sigma)
        return context

    def _decide(self, args: tuple[Any, ...], kwargs: dict[str, Any], owned: bool, started: float,
                previous: CacheContext | None = None) -> Call:
        """Decide one step: the named steps below, in order, each on the call's :class:`Call` record."""
        context = self.leader.context()
        assert context is not None  # set by the caller, or by _begin
        call = self._open(context, owned, started, previous)
        self._read_step(call, context, args, kwargs)
        self._restart_if_new_trajectory(call)
        self._ask_policy(call)
        if call.decision is Decision.FORECAST:
            self._forecast(call)
        if call.decision is Decision.COMPUTE:
            self._prepare_full_step(call)
            self._look_up_replay(call, args, kwargs)
        self._arm(call, args, kwargs)
        return call

    def _open(self, context: CacheContext, owned: bool, started: float, previous: CacheContext | None) -> Call:
        """A fresh :class:`Call` on the trajectory of ``context`` (named after it)."""
        state = self.leader.state()
        if state.name is None:
            state.name = context.name
        return Call(state, owned, started, previous)

    def _read_step(self, call: Call, context: CacheContext, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        """Read the latent, the step's time (on the host too when that needs no sync) and the cache
        context's step information into ``call``.

        :raises ForwardInputError: if the latent or the timestep argument is missing.
        """
        latent = self.adapter.latent_tensor(argument(args, kwargs, *self._latent))
        timestep = argument(args, kwargs, *self._timestep)
        if not isinstance(latent, Tensor) or timestep is None:
            raise ForwardInputError(
                f"LESA needs the `{self._latent[0]}` (a tensor) and `{self._timestep[0]}` arguments of "
                f"{type(self.model).__qualname__}.forward, got {type(latent).__name__} and "
                f"{type(timestep).__name__}; pass both, as the model's pipeline does, or remove LESA "
                "(handle.remove()) to call the model some other way"
            )
        call.device = device = latent.device
        t_dev = self.adapter.step_time(timestep)
        if context.sigma is not None:
            call.host_t = float(context.sigma)
        elif t_dev.device.type == "cpu":
            call.host_t = float(t_dev)
        call.t_dev = t_dev if t_dev.device == device else t_dev.to(device, non_blocking=True)
        call.key = (tuple(latent.shape), device)
        call.latent = latent
        call.given_index = context.step_index
        call.given_steps = context.num_inference_steps

    def _restart_if_new_trajectory(self, call: Call) -> None:
        """End the context's trajectory if ``call`` cannot continue it; set up a new one if none runs."""
        state = call.state
        if state.repeats_step(call):
            raise ForwardInputError(
                f"LESA: a second call of {type(self.model).__qualname__} at step {state.last_index} of cache context "
                f"'{state.name}': the pipeline calls the transformer more than once per step in one context (a "
                "guidance-distilled or skip-layer second pass, or separate cond/uncond calls), which would mix two "
                "trajectories. Run each pass in its own `transformer.cache_context(name)`, or declare the forward "
                "argument that marks the extra call in the adapter's `extra_call_arguments`"
            )
        if state.cannot_continue_with(call):
            state.reset()
        if not state.steps_done:
            state.key = call.key
            assert call.latent is not None
            state.row_groups = self.adapter.guidance_rows(call.latent)
            if call.given_steps is not None:
                self.predictor.check_num_steps(int(call.given_steps))
                state.num_steps = int(call.given_steps)

    def _ask_policy(self, call: Call) -> None:
        """The step's index (the caller's, else the count so far) and the policy's decision for it."""
        call.latent = None  # only the trajectory's first call reads it
        state = call.state
        call.index = int(call.given_index) if call.given_index is not None else state.steps_done
        call.decision = state.policy.decide(StepInfo(call.index, call.host_t, call.given_steps))
        assert call.device is not None
        call.step_dev = self._step_scalar(call.index, call.device)

    def _forecast(self, call: Call) -> None:
        """Forecast the tap from the context's history under ``torch.no_grad()``; with too little
        history, or a forecast the guard rejects, the step becomes a full one."""
        state = call.state
        if len(state.features) < self.min_history or (self.shared.probe_at >= 0 and state.probe is None):
            call.decision = Decision.COMPUTE  # too little history: nothing to forecast from
            return
        if self.shared.probe_at >= 0:
            call.awaits_probe = True  # forecast once the probe block ran (_forecast_on_probe)
            return
        inputs = self._forecast_input(call)
        with torch.no_grad():
            forecast = self.predictor(inputs)
        if self._rejects(call, forecast) or self._overruled(call, inputs, forecast):
            return
        call.forecast = forecast
        call.inputs = inputs

    def _forecast_input(self, call: Call, probe_drift: Tensor | None = None) -> ForecastInput:
        """The predictor's input from the context's history (and the probe's drift, on a probe step)."""
        state = call.state
        assert call.t_dev is not None and call.step_dev is not None
        return ForecastInput(features=tuple(state.features), times=torch.stack(tuple(state.times)),
                             steps=torch.stack(tuple(state.steps)), t=call.t_dev, step=call.step_dev,
                             probe_drift=probe_drift)

    @torch.compiler.disable
    def _forecast_on_probe(self, call: Call) -> None:
        """Called by the probe block's hook on a probe forecast step, once blocks 0..k−1 ran: forecast from
        the history and the probe's drift since the last full pass; the blocks after the probe then pass
        through and the tail substitutes the forecast. A forecast the guard rejects, or the policy overrules,
        leaves the body running: the step becomes a full one (its first k blocks already ran)."""
        shared = self.shared
        shared.on_probe = None
        call.awaits_probe = False
        state = call.state
        assert shared.probe is not None and state.probe is not None
        inputs = self._forecast_input(call, shared.probe.detach() - state.probe)
        with torch.no_grad():
            forecast = self.predictor(inputs)
        if self._rejects(call, forecast) or self._overruled(call, inputs, forecast):
            if call.host_t is not None:
                self.predictor.check_time(call.index, call.host_t)
            return
        call.forecast = forecast
        call.inputs = inputs
        shared.skip_body = True
        shared.forecast = forecast

    def _overruled(self, call: Call, inputs: ForecastInput, forecast: Tensor) -> bool:
        """``True`` if the context's policy reviews forecasts (an adaptive policy) and, told the forecast's
        drift from the newest history tap (one host sync), turns the step into a full one."""
        policy = call.state.policy
        if not policy.reviews_forecasts:
            return False
        newest = inputs.features[-1]
        drift = float((forecast.float() - newest.float()).norm() / newest.float().norm().clamp_min(1e-12))
        if policy.review(StepInfo(call.index, call.host_t, call.given_steps), drift) is Decision.COMPUTE:
            call.decision = Decision.COMPUTE
            return True
        return False

    def _rejects(self, call: Call, forecast: Tensor) -> bool:
        """``True`` if the non-finite guard is on and ``forecast`` is not finite (one host sync): the
        step then runs in full and counts as a fallback; the first such step is logged."""
        if not self.guard or bool(torch.isfinite(forecast).all()):
            return False
        call.fallback = True
        call.decision = Decision.COMPUTE
        if not self._warned_non_finite:
            self._warned_non_finite = True
            logger.warning(
                "LESA: a non-finite forecast at step %d of context '%s' was replaced by a full "
                "step (counted as fallback_steps in stats(); logged once)", call.index, call.state.name)
        return True

    def _prepare_full_step(self, call: Call) -> None:
        """On a full step, read t on the host if it is not known yet (one sync; the body dominates),
        detect a new loop seen only now, and let the predictor check t against its schedule."""
        if call.host_t is None:
            assert call.t_dev is not None
            call.host_t = float(call.t_dev)
            state = call.state
            if call.given_index is None and state.steps_done and state.starts_over(call.host_t, None):
                self._restart_late(call)
        self.predictor.check_time(call.index, call.host_t)

    def _restart_late(self, call: Call) -> None:
        """Start over at step 0: a new loop seen only on a full step (a GPU loop without step information)."""
        state = call.state
        groups = state.row_groups
        state.reset()
        state.key = call.key
        state.row_groups = groups  # the same call: the same rows
        call.index = 0
        state.policy.decide(StepInfo(0, call.host_t, call.given_steps))
        assert call.device is not None
        call.step_dev = self._step_scalar(0, call.device)

    def _look_up_replay(self, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """With a replay (:class:`~lesa_core.replay.FullStepReplay`), on a full step before the trajectory's
        first forecast: hand back the step recorded for these exact inputs (its output replaces the forward),
        or note the key to record the step under once it ran. Later full steps follow forecasts, whose inputs
        no other run shares: they are not looked up."""
        if self.replay is None or call.state.forecasts:
            return
        key = self.replay.key((call.state.name, call.index, self.tap, self.shared.probe_at), args, kwargs)
        recorded = self.replay.get(key)
        if recorded is None:
            call.replay_key = key
            return
        return_dict = argument(args, kwargs, *self._return_dict)
        call.output = self.adapter.wrap_output(
            recorded.output.clone(), self._return_dict_default if return_dict is None else bool(return_dict))
        call.replayed = recorded

    def _record_replay(self, call: Call, result: Any, tap: Tensor, probe: Tensor | None) -> None:
        """Record a full step the replay did not hold (copies: the pipeline may write to its output)."""
        assert self.replay is not None and call.replay_key is not None
        self.replay.put(call.replay_key, RecordedStep(
            self.adapter.unwrap_output(result).detach().clone(), tap.clone(), None if probe is None else probe.clone()))

    def _arm(self, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Set the flags the other hooks read during the forward; on a forecast step, either reduce the
        body to pass-throughs with the forecast at the tap, or (model-output tap) prepare the return value
        that replaces the whole forward."""
        shared = self.shared
        shared.active = True
        if call.awaits_probe:
            shared.on_probe = lambda: self._forecast_on_probe(call)
            return
        if call.forecast is None:
            return
        if self.skips_forward:
            return_dict = argument(args, kwargs, *self._return_dict)
            call.output = self.adapter.wrap_output(
                call.forecast, self._return_dict_default if return_dict is None else bool(return_dict))
        else:
            shared.skip_body = True
            shared.forecast = call.forecast

    def _step_scalar(self, index: int, device: torch.device) -> Tensor:
        """``()`` float32 ``index`` on ``device``: a view into a cached ``arange`` (no per-step allocation)."""
        table = self._step_scalars.get(device)
        if table is None or index >= table.numel():
            size = max(64, 2 * index + 2, 0 if table is None else 2 * table.numel())
            table = torch.arange(size, dtype=torch.float32, device=device)
            self._step_scalars[device] = table
        return table[index]

    @torch.compiler.disable
    def _end(self, call: Call, result: Any) -> Any:
        """Record the step's tap (the real one on a full step, the forecast otherwise), update the
        statistics and call the observer; leave the cache context if the call entered it."""
        shared = self.shared
        state = call.state
        try:
            if call.awaits_probe:
                raise ForwardInputError(
                    f"LESA: the probe block ({self.probe_blocks} of the body) was not reached during this forward of "
                    f"{type(self.model).__qualname__}; check the adapter's body declarations")
            if call.replayed is not None:
                tap = call.replayed.tap.clone()
                keep = True
                if shared.probe_at >= 0:
                    assert call.replayed.probe is not None
                    state.probe = call.replayed.probe.clone()
            elif call.forecast is None:
                tap = self._recorded_tap(result)
                keep = True
                if shared.probe_at >= 0:
                    state.probe = self._recorded_probe()
                if call.replay_key is not None:
                    self._record_replay(call, result, tap, state.probe if shared.probe_at >= 0 else None)
            else:
                if not self.skips_forward and not shared.substituted:
                    raise ForwardInputError(
                        f"LESA: the forecast of tap '{self.tap}' was not substituted during this forward of "
                        f"{type(self.model).__qualname__}{self._skipped_hint()}; its output is not the forecast's")
                tap = call.forecast
                keep = self.history_mode == "steps"
            state.record(call, tap, keep)
            if self.observer is not None:
                self._report(call, tap)
        except BaseException:
            state.reset()
            raise
        finally:
            shared.clear()
            if call.owned:
                self.leader.set_context(call.previous)
        return result

    def _report(self, call: Call, tap: Tensor) -> None:
        """Tell the observer about the step: one event, or for a batched-guidance call one per guidance
        branch, with that branch's rows of the tap and of the forecast's history (a trajectory of its own,
        named after the branch, or ``<context>:<branch>`` under a caller's context)."""
        assert self.observer is not None and call.t_dev is not None
        state = call.state
        name = state.name or DEFAULT_CONTEXT
        probe = self.shared.probe if call.replayed is None else call.replayed.probe  # a replayed step ran no block
        probe = None if probe is None else probe.detach()
        if state.row_groups is None:
            self.observer(StepEvent(name, call.index, call.t_dev, call.decision, tap, call.inputs, call.fallback,
                                    probe))
            return
        for branch, rows in state.row_groups:
            label = branch if name == DEFAULT_CONTEXT else f"{name}:{branch}"
            inputs = None if call.inputs is None else dataclasses.replace(
                call.inputs, features=tuple(f[rows] for f in call.inputs.features),
                probe_drift=None if call.inputs.probe_drift is None else call.inputs.probe_drift[rows])
            self.observer(StepEvent(label, call.index, call.t_dev, call.decision, tap[rows], inputs, call.fallback,
                                    None if probe is None else probe[rows]))

    def _recorded_tap(self, result: Any) -> Tensor:
        """The tap of a full step, detached and contiguous (a view would keep the whole joint-stream
        buffer alive)."""
        if self.skips_forward:
            tap = self.adapter.unwrap_output(result)
        else:
            if self.shared.recorded is None:
                raise ForwardInputError(
                    f"LESA: tap '{self.tap}' was not reached during this forward of {type(self.model).__qualname__}"
                    f"{self._skipped_hint()}; check the adapter's body/tap declarations"
                )
            tap = self.shared.recorded
        tap = tap.detach()
        if not tap.is_contiguous():
            tap = tap.contiguous()
        return tap

    def _recorded_probe(self) -> Tensor:
        """The probe of a full step, detached and contiguous (kept as the drift's reference)."""
        probe = self.shared.probe
        if probe is None:
            raise ForwardInputError(
                f"LESA: the probe block ({self.probe_blocks} of the body) was not reached during this forward of "
                f"{type(self.model).__qualname__}{self._skipped_hint()}; check the adapter's body declarations")
        probe = probe.detach()
        return probe if probe.is_contiguous() else probe.contiguous()

    def _skipped_hint(self) -> str:
        """Why a tap may not have been reached: an extra call that skipped the tapped block."""
        if not self._extra_arguments:
            return ""
        options = ", ".join(f"`{a}` (pipeline option `{o}`)" for a, o in self.adapter.extra_call_arguments.items())
        return (f" — an extra call with {options} may skip the block the tap '{self.tap}' reads; choose a tap after "
                "the body (e.g. 'normed' or 'output'), or leave that block out of the option")

    @torch.compiler.disable
    def _abort(self, call: Call) -> None:
        """The forward raised (Ctrl-C, out of memory, ...): its trajectory cannot go on."""
        self.shared.clear()
        call.state.reset()
        if call.owned:
            self.leader.set_context(call.previous)
