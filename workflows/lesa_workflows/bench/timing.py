"""Timed sampling loops: interleaved repeats of every method, per-step costs, the JSON report.

One trajectory is a flow-matching Euler loop over a bare transformer, written the way diffusers'
FLUX pipeline calls its transformer plus the step information of ``CacheContext``::

    for i, t in enumerate(timesteps):
        with transformer.cache_context("cond", step_index=i, num_inference_steps=n, timestep=..., sigma=...):
            v = transformer(hidden_states=x, timestep=t / 1000, ..., return_dict=False)[0]
        x = scheduler.step(v, t, x).prev_sample

Everything that does not belong to sampling (scheduler set-up, the per-step timestep tensors, host
copies of the schedule) is prepared before the clock starts. The clock is ``time.perf_counter`` after
``torch.cuda.synchronize`` on CUDA devices, so a run's time is the device's time for the whole loop.

Repeats are interleaved (full, lesa, taylor1, …, full, lesa, …) so that drifts of the machine (other
processes, clocks, thermal state) spread over every method; a warm-up trajectory of every method runs
first and is not timed. The reported time is the median over repeats.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lesa_workflows.bench.methods import DEFAULT_METHODS, Method, PolicySpec, make_method
from lesa_workflows.bench.models import BenchModel, build_model

__all__ = ["SpeedReport", "TimedMethod", "Trajectory", "run_speed_bench"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trajectory:
    """One prepared sampling loop of ``steps`` steps for ``model`` (see the module docstring)."""

    def __init__(self, bm: BenchModel, steps: int) -> None:
        self.bm = bm
        self.steps = steps
        scheduler = bm.scheduler_factory()
        kwargs: dict[str, Any] = {"device": bm.device}
        if bm.mu is not None:
            kwargs["mu"] = bm.mu
        scheduler.set_timesteps(steps, **kwargs)
        self.scheduler = scheduler
        self.timesteps: list[Tensor] = list(scheduler.timesteps)
        host_timesteps = scheduler.timesteps.tolist()
        self.host_timesteps = [float(t) for t in host_timesteps]
        self.host_sigmas = [float(s) for s in scheduler.sigmas.tolist()]
        # the model's timestep argument (FLUX: t in [0, 1]), one device tensor per step, made now
        self.model_timesteps = [(t / 1000.0).reshape(1).to(bm.dtype) for t in scheduler.timesteps]

    def run(self, transformer: nn.Module, *, on_step: Callable[[int], None] | None = None) -> Tensor:
        """Denoise the bench model's latents; ``on_step(i)`` is called after each step (instrumentation)."""
        bm, scheduler = self.bm, self.scheduler
        scheduler._step_index = None
        scheduler.set_begin_index(0)
        latents = bm.latents
        context = getattr(transformer, "cache_context", None)
        n = self.steps
        with torch.inference_mode():
            for i in range(n):
                fields = {"step_index": i, "num_inference_steps": n, "timestep": self.host_timesteps[i],
                          "sigma": self.host_sigmas[i]}
                with context("cond", **fields) if context is not None else contextlib.nullcontext():
                    velocity = transformer(hidden_states=latents, timestep=self.model_timesteps[i],
                                           return_dict=False, **bm.kwargs)[0]
                latents = scheduler.step(velocity, self.timesteps[i], latents, return_dict=False)[0]
                if on_step is not None:
                    on_step(i)
        return latents


class _Counter:
    """Counts forward calls of one module (a plain forward hook: no device work, no sync)."""

    def __init__(self, module: nn.Module) -> None:
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


@dataclass
class TimedMethod:
    """One method's measurements.

    :ivar times: wall-clock seconds of each timed trajectory.
    :ivar full_passes: full passes counted in each trajectory (warm-up included).
    """

    name: str
    times: list[float] = field(default_factory=list)
    full_passes: list[int] = field(default_factory=list)
    cache_bytes: int | None = None
    skipped: str | None = None

    @property
    def seconds(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def row(self, baseline: float | None) -> dict[str, Any]:
        seconds = self.seconds
        row: dict[str, Any] = {
            "name": self.name,
            "full_passes": self.full_passes[-1] if self.full_passes else None,
            "seconds": None if seconds is None else round(seconds, 4),
            "speedup": None if seconds is None or not baseline else round(baseline / seconds, 3),
            "cache_bytes": self.cache_bytes,
        }
        if self.skipped is not None:
            row["skipped"] = self.skipped
        return row


@dataclass
class SpeedReport:
    """The result of :func:`run_speed_bench`; :meth:`to_json` is the ``--json`` document."""

    model: str
    device: str
    steps: int
    forecast_step_fraction: float | None
    methods: list[TimedMethod]
    step_seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        baseline = next((m.seconds for m in self.methods if m.name == "full"), None)
        return {
            "model": self.model,
            "device": self.device,
            "steps": self.steps,
            "forecast_step_fraction": None if self.forecast_step_fraction is None
            else round(self.forecast_step_fraction, 5),
            "methods": [m.row(baseline) for m in self.methods],
        }

    def table(self) -> str:
        """A plain-text table for people."""
        doc = self.to_json()
        lines = [f"model {doc['model']} on {doc['device']}, {doc['steps']} steps; one forecast step = "
                 f"{_fmt(doc['forecast_step_fraction'], '.2%')} of a full step"]
        lines.append(f"{'method':<28}{'full':>6}{'seconds':>10}{'speed-up':>10}{'cache MiB':>11}")
        for row in doc["methods"]:
            if row.get("skipped"):
                lines.append(f"{row['name']:<28}  skipped: {row['skipped']}")
                continue
            cache = None if row["cache_bytes"] is None else row["cache_bytes"] / 2**20
            lines.append(f"{row['name']:<28}{row['full_passes']:>6}{_fmt(row['seconds'], '.3f'):>10}"
                         f"{_fmt(row['speedup'], '.2f'):>10}{_fmt(cache, '.2f'):>11}")
        return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _run_once(method: Method, bm: BenchModel, trajectory: Trajectory, *, timed: bool) -> tuple[float, int, int | None]:
    """Attach, run one trajectory, read the cache size, detach. Returns (seconds, full passes, bytes)."""
    target = method.attach(bm.transformer)
    counter = _Counter(method.probe(bm.transformer))
    try:
        method.before_trajectory()
        synchronize(bm.device)
        started = time.perf_counter()
        trajectory.run(target)
        synchronize(bm.device)
        elapsed = time.perf_counter() - started
        cache = method.cache_bytes()
    finally:
        counter.remove()
        method.detach()
    return elapsed, counter.count, cache


def step_costs(method: Method, bm: BenchModel, trajectory: Trajectory) -> tuple[list[float], list[bool]]:
    """Seconds of every step (device-synchronised around each) and whether it was a full pass."""
    target = method.attach(bm.transformer)
    counter = _Counter(method.probe(bm.transformer))
    seconds: list[float] = []
    full: list[bool] = []
    state = {"t": 0.0, "count": 0}

    def on_step(_: int) -> None:
        synchronize(bm.device)
        now = time.perf_counter()
        seconds.append(now - state["t"])
        full.append(counter.count > state["count"])
        state["t"], state["count"] = now, counter.count

    try:
        method.before_trajectory()
        synchronize(bm.device)
        state["t"] = time.perf_counter()
        trajectory.run(target, on_step=on_step)
    finally:
        counter.remove()
        method.detach()
    return seconds, full


def forecast_fraction(seconds: Sequence[float], full: Sequence[bool]) -> tuple[float | None, float, float]:
    """(median forecast step / median full step, median full, median forecast) of one instrumented run."""
    full_steps = [s for s, f in zip(seconds, full, strict=True) if f]
    forecast_steps = [s for s, f in zip(seconds, full, strict=True) if not f]
    if not full_steps or not forecast_steps:
        return None, 0.0, 0.0
    full_median, forecast_median = statistics.median(full_steps), statistics.median(forecast_steps)
    return forecast_median / full_median, full_median, forecast_median


def run_speed_bench(
    model: str | BenchModel = "cpu-bench",
    *,
    methods: Sequence[str | Method] = DEFAULT_METHODS,
    steps: int = 50,
    repeats: int = 3,
    policy: PolicySpec | None = None,
    device: str | None = None,
    fraction_method: str = "lesa",
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    deadline: float | None = None,
    optional: Sequence[str] = (),
    warmup_steps: Mapping[str, int] | None = None,
    hard_deadline: float | None = None,
) -> SpeedReport:
    """Time ``methods`` on ``model``: a warm-up trajectory each, then ``repeats`` interleaved rounds,
    then one instrumented trajectory of ``fraction_method`` for the per-step costs.

    :param methods: method names (see :func:`~lesa_workflows.bench.methods.make_method`) or
        :class:`~lesa_workflows.bench.methods.Method` instances, in interleaving order.
    :param deadline: a ``time.perf_counter()`` value; the methods named in ``optional`` are dropped
        from the rounds that would start after it is predicted to pass (their result keeps the
        repeats done so far).
    :param hard_deadline: a ``time.perf_counter()`` value; no further round starts once the next one
        (estimated from the last, optional methods dropped) would end after it (at least one timed
        round always runs).
    :param warmup_steps: per method name, a shorter warm-up trajectory (e.g. ``{"full": 6}``: the
        warm-up only has to initialise kernels and caches; LESA's needs every history length, so it
        keeps the full length).
    """
    from lesa_core.progress import progress_bar

    policy = policy or PolicySpec()
    bm = model if isinstance(model, BenchModel) else build_model(model, device)
    trajectory = Trajectory(bm, steps)
    say = log or (lambda _msg: None)
    built = [m if isinstance(m, Method) else make_method(m, policy, steps) for m in methods]
    warmup_trajectories = {name: Trajectory(bm, n) for name, n in (warmup_steps or {}).items() if n < steps}
    results = {m.name: TimedMethod(m.name, skipped=m.skipped) for m in built}
    active = [m for m in built if m.skipped is None]
    for method in active:
        try:
            method.prepare(bm.transformer)
        except Exception as exc:  # an outside library that cannot run here is reported, not fatal
            method.skipped = results[method.name].skipped = f"set-up failed: {type(exc).__name__}: {exc}"
            say(f"{method.name}: {method.skipped}")
    active = [m for m in active if m.skipped is None]
    instrumented = fraction_method in {m.name for m in active}
    bar = progress_bar(total=len(active) * (repeats + 1) + int(instrumented), desc=f"bench {bm.spec.name}",
                   unit="run", disable=not show_progress)
    round_seconds: float | None = None
    try:
        for rnd in range(repeats + 1):  # round 0 is the warm-up
            round_started = time.perf_counter()
            late = deadline is not None and round_seconds is not None and rnd > 1 \
                and time.perf_counter() + round_seconds > deadline
            dropped = [m.name for m in active if m.name in optional] if late else []
            if dropped:
                say(f"time budget: dropping {', '.join(dropped)} from round {rnd}")
                active = [m for m in active if m.name not in optional]
            if hard_deadline is not None and rnd > 1:
                estimate = sum(results[m.name].times[-1] for m in active if results[m.name].times)
                if time.perf_counter() + estimate > hard_deadline:
                    say(f"time budget: stopping after {rnd - 1} timed round(s)")
                    break
            for method in active:
                run = trajectory if rnd > 0 else warmup_trajectories.get(method.name, trajectory)
                elapsed, passes, cache = _run_once(method, bm, run, timed=rnd > 0)
                result = results[method.name]
                result.full_passes.append(passes)
                if cache is not None:
                    result.cache_bytes = max(cache, result.cache_bytes or 0)
                if rnd > 0:
                    result.times.append(elapsed)
                say(f"round {rnd}{' (warm-up)' if rnd == 0 else ''} {method.name}: {elapsed:.4f} s, "
                    f"{passes} full passes, cache {cache} B")
                bar.update(1)
            if rnd > 0:
                round_seconds = time.perf_counter() - round_started
        fraction = None
        step_seconds: dict[str, float] = {}
        if instrumented:
            method = next(m for m in active if m.name == fraction_method)
            seconds, full = step_costs(method, bm, trajectory)
            fraction, full_s, forecast_s = forecast_fraction(seconds, full)
            step_seconds = {"full_step": full_s, "forecast_step": forecast_s}
            say(f"instrumented {fraction_method}: full step {full_s * 1e3:.3f} ms, forecast step "
                f"{forecast_s * 1e3:.3f} ms, fraction {fraction}")
            bar.update(1)
    finally:
        bar.close()
        for method in built:
            method.close()
    return SpeedReport(bm.spec.name, bm.describe_device(), steps, fraction,
                       [results[m.name] for m in built], step_seconds)
