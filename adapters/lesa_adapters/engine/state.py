"""The engine's state: one trajectory per cache context, the bookkeeping of one forward call, and the
flags the leader hook sets for the other hooks during a call.

Nothing here imports diffusers: diffusers' ``StateManager`` creates one :class:`ContextState` per
cache-context name (through the leader hook), and the attachment drives it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lesa_core.interfaces import CachePolicy, Decision, ForecastInput
from lesa_core.replay import RecordedStep

__all__ = ["Call", "ContextState", "StepFlags"]

_T_EPS = 1e-6


class StepFlags:
    """Per-attachment flags the leader sets for the duration of one forward call.

    The block and tap hooks read them; they are plain attributes so that ``torch.compile`` guards on
    their values (two graph variants: full and forecast).
    """

    __slots__ = ("active", "forecast", "on_probe", "probe", "probe_at", "recorded", "skip_body", "substituted")

    def __init__(self) -> None:
        self.active = False  # inside a forward call of the hooked model
        self.skip_body = False  # forecast step: blocks pass through, the tap hook substitutes
        self.forecast: Tensor | None = None
        self.recorded: Tensor | None = None
        self.substituted = False  # forecast step: the forecast took the tap's place
        self.probe_at = -1  # index of the body block whose output is the probe (-1: no probe); fixed
        self.probe: Tensor | None = None  # the probe recorded during this call
        self.on_probe: Callable[[], None] | None = None  # a probe forecast step: forecast once the probe is in

    def clear(self) -> None:
        self.active = False
        self.skip_body = False
        self.forecast = None
        self.recorded = None
        self.substituted = False
        self.probe = None
        self.on_probe = None


class Call:
    """Bookkeeping of one forward call, from :meth:`DiffusersAttachment._begin` to ``_end``.

    :ivar state: the trajectory of the call's cache context.
    :ivar owned: the attachment set the cache context itself (the default one, or an extra call's) and
        restores ``previous`` at the end.
    :ivar previous: the caller's cache context (``None`` if it set none), restored when ``owned``.
    :ivar latent: the latent argument, kept until the trajectory's row groups are known.
    :ivar started: ``time.perf_counter()`` when the call began.
    :ivar key: latent shape and device; a change starts a new trajectory.
    :ivar device: the latent's device (where the step's time and index live).
    :ivar given_index: ``CacheContext.step_index``, if the caller set one.
    :ivar given_steps: ``CacheContext.num_inference_steps``, if the caller set one.
    :ivar host_t: the step's flow time on the host, when known without a device synchronisation.
    :ivar t_dev: the step's flow time, ``()`` float32 on ``device``.
    :ivar index: the step index within the trajectory.
    :ivar step_dev: ``index`` as a ``()`` float32 tensor on ``device``.
    :ivar decision: compute or forecast (a rejected forecast turns into compute).
    :ivar fallback: the forecast was not finite and the step runs in full instead.
    :ivar forecast: the forecast tap, on a forecast step.
    :ivar inputs: what the predictor was given, on a forecast step.
    :ivar output: the model's return value when the whole forward is skipped (model-output tap).
    :ivar awaits_probe: a probe forecast step: the forecast is made once the probe block ran (see
        :meth:`DiffusersAttachment._forecast_on_probe`).
    :ivar replayed: a full step the runtime's replay handed back (its output replaces the forward).
    :ivar replay_key: a full step the replay does not hold yet: the key to record it under.
    """

    __slots__ = ("awaits_probe", "decision", "device", "fallback", "forecast", "given_index", "given_steps", "host_t",
                 "index", "inputs", "key", "latent", "output", "owned", "previous", "replay_key", "replayed", "started",
                 "state", "step_dev", "t_dev")

    def __init__(self, state: ContextState, owned: bool, started: float, previous: Any = None) -> None:
        self.state = state
        self.owned = owned
        self.previous = previous
        self.latent: Tensor | None = None
        self.started = started
        self.key: tuple[Any, ...] | None = None
        self.device: torch.device | None = None
        self.given_index: int | None = None
        self.given_steps: int | None = None
        self.decision = Decision.COMPUTE
        self.fallback = False
        self.forecast: Tensor | None = None
        self.inputs: ForecastInput | None = None
        self.output: Any = None
        self.host_t: float | None = None
        self.index = 0
        self.t_dev: Tensor | None = None
        self.step_dev: Tensor | None = None
        self.awaits_probe = False
        self.replayed: RecordedStep | None = None
        self.replay_key: str | None = None


class ContextState:
    """One cache context's trajectory: policy, history, statistics. Created by diffusers' ``StateManager``.

    :param make_policy: builds this context's cache policy.
    :param history_size: the most taps the history keeps (``predictor.history_size``).
    :param finished: where :meth:`reset` leaves the statistics of an ended trajectory, by context name.
    :ivar row_groups: for a batched-guidance call (several guidance branches concatenated along the batch),
        each branch's name and batch rows, decided at the trajectory's first call; ``None`` otherwise.
    """

    def __init__(self, make_policy: Callable[[], CachePolicy], history_size: int,
                 finished: dict[str, dict[str, Any]]) -> None:
        self.name: str | None = None
        self.policy = make_policy()
        self.finished = finished
        self.features: deque[Tensor] = deque(maxlen=history_size)
        self.times: deque[Tensor] = deque(maxlen=history_size)
        self.steps: deque[Tensor] = deque(maxlen=history_size)
        self._clear()

    def _clear(self) -> None:
        self.features.clear()
        self.times.clear()
        self.steps.clear()
        self.probe: Tensor | None = None  # the probe of the last full pass
        self.steps_done = 0
        self.last_index = -1
        self.last_t: float | None = None
        self.num_steps: int | None = None
        self.key: tuple[Any, ...] | None = None
        self.full = 0
        self.forecasts = 0
        self.fallbacks = 0
        self.seconds = 0.0
        self.decisions: list[str] = []
        self.row_groups: tuple[tuple[str, slice], ...] | None = None

    # -- trajectory boundaries --------------------------------------------------------------------
    def starts_over(self, host_t: float, given_index: int | None) -> bool:
        """``True`` if a call at flow time ``host_t`` cannot continue this trajectory: t went back up,
        or (no step index given) t repeats the only step so far — a call that ended after its first
        step, e.g. by an exception in a step callback, is followed by the next call's first step."""
        if self.last_t is None:
            return False
        if host_t > self.last_t + _T_EPS:
            return True
        return given_index is None and self.steps_done == 1 and abs(host_t - self.last_t) <= _T_EPS

    def cannot_continue_with(self, call: Call) -> bool:
        """``True`` if ``call`` starts a new trajectory rather than continuing this one: the latent's
        shape or device changed, the step index is 0 or did not increase, t (known on the host) starts
        over, or ``num_inference_steps`` changed."""
        index, steps = call.given_index, call.given_steps
        return bool(self.steps_done) and (
            self.key != call.key
            or (index is not None and (index == 0 or index <= self.last_index))
            or (call.host_t is not None and self.starts_over(call.host_t, index))
            or (steps is not None and self.num_steps is not None and steps != self.num_steps)
        )

    def repeats_step(self, call: Call) -> bool:
        """``True`` if ``call`` is a second call of this trajectory's last step (the same step index, or
        with none the same host-known t), past its first steps: a pipeline calling the transformer more
        than once per step in one cache context, which would mix two trajectories into one."""
        if self.steps_done < 2 or self.key != call.key:
            return False
        if call.given_index is not None:
            return call.given_index == self.last_index
        return call.host_t is not None and self.last_t is not None and abs(call.host_t - self.last_t) <= _T_EPS

    # -- statistics -----------------------------------------------------------------------------------
    def record(self, call: Call, tap: Tensor, keep: bool) -> None:
        """Count the finished ``call`` whose tap was ``tap``; append the tap to the history if ``keep``."""
        if call.forecast is None:
            self.full += 1
            if call.fallback:
                self.fallbacks += 1
            self.decisions.append("x" if call.fallback else "F")
        else:
            self.forecasts += 1
            self.decisions.append("c")
        if keep:
            assert call.t_dev is not None and call.step_dev is not None
            self.features.append(tap)
            self.times.append(call.t_dev)
            self.steps.append(call.step_dev)
        if call.host_t is not None:
            self.last_t = call.host_t
        self.last_index = call.index
        self.steps_done += 1
        self.seconds += time.perf_counter() - call.started

    def cache_bytes(self) -> int:
        probe = 0 if self.probe is None else self.probe.numel() * self.probe.element_size()
        return probe + sum(f.numel() * f.element_size() for f in self.features)

    def summary(self) -> dict[str, Any]:
        extra = {} if self.row_groups is None else {"row_groups": [name for name, _ in self.row_groups]}
        return {
            "full_steps": self.full,
            "forecast_steps": self.forecasts,
            "fallback_steps": self.fallbacks,
            "cache_bytes": self.cache_bytes(),
            "seconds": self.seconds,
            "decisions": "".join(self.decisions),
            **extra,
        }

    def reset(self, *args: Any, **kwargs: Any) -> None:
        """End the trajectory: snapshot its statistics, forget history and policy state."""
        if self.steps_done and self.name is not None:
            self.finished[self.name] = self.summary()
        self._clear()
        self.policy.reset()
