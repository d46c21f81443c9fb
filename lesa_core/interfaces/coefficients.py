"""Cheap coefficients on the forecast path of linear predictors.

A :class:`~lesa_core.interfaces.LinearPredictor` forecasts ``Σ_k coef[k]·h_k + bias`` where ``coef`` and
``bias`` depend only on the history's times and steps, the target time and step, and the predictor's
parameters. Computing them is a few hundred tiny operations (three KAN time networks for LESA's
stage-aware expert), while the weighted sum itself is one pass over the history. At inference
:func:`fast_coefficients` therefore avoids recomputing them:

* **host inputs** (every tensor of the :class:`~lesa_core.interfaces.ForecastInput` on the CPU) **or
  host copies** (``ForecastInput.scalars``, which a runtime fills when it knows the times without a
  synchronisation, on any device): the result is memoised per (history times, history steps, t, step,
  tensor devices and dtypes, parameter versions). A sampler repeats the same schedule on every
  generation, so after the first trajectory a forecast costs one dictionary lookup plus the weighted
  sum — on CUDA no coefficient kernel at all.
* **CUDA inputs without host copies**: the computation is captured once per history length into a CUDA graph with static
  input buffers; a forecast then copies the four small time tensors in and replays the graph — a few
  launches instead of hundreds, no host synchronisation. If a capture fails (a predictor that reads a
  device value on the host, say) the predictor falls back to eager evaluation for good and logs once.
  ``LESA_CUDA_GRAPHS=0`` in the environment turns graphs off by default; ``with cuda_graphs(False):``
  turns them off (or on) for the code inside, in this thread or task only.

Neither applies while gradients flow to the parameters, in ``train()`` mode, or under
``torch.compile``: training and compilation always see the plain computation. The memo key includes
every parameter's and buffer's storage address and version counter, so an optimiser step, a
``load_state_dict`` or a ``.to()`` invalidates it. The returned tensors of the graph path are the
graph's static outputs: valid until the next forecast of the same predictor (the runtime consumes
them at once). Coefficients must depend on the times and steps only (the
:class:`~lesa_core.interfaces.LinearPredictor` contract), never on feature values.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lesa_core.environment import env_flag

if TYPE_CHECKING:
    from lesa_core.interfaces.predictor import ForecastInput

__all__ = ["MEMO_SIZE", "cuda_graphs", "cuda_graphs_enabled", "fast_coefficients"]

logger = logging.getLogger("lesa")

_CUDA_GRAPHS: contextvars.ContextVar[bool | None] = contextvars.ContextVar("lesa_cuda_graphs", default=None)
"""Whether coefficient computations on CUDA are captured into graphs (``None``: ``LESA_CUDA_GRAPHS``)."""
_ENV_CUDA_GRAPHS: list[bool] = []
"""``LESA_CUDA_GRAPHS``, read (and validated) on first use, not at import."""
MEMO_SIZE = 4096
"""The most memoised host-input coefficient sets kept per predictor (oldest dropped first)."""

CoefficientFn = Callable[["ForecastInput"], tuple[Tensor, Tensor]]


class _Graph:
    __slots__ = ("graph", "inputs", "outputs")

    def __init__(self, graph: Any, inputs: tuple[Tensor, Tensor, Tensor, Tensor], outputs: tuple[Tensor, Tensor]):
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs


class _FastState:
    """Per-module caches; dropped (not copied) by ``copy.deepcopy`` and pickling."""

    def __init__(self) -> None:
        self.memo: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}
        self.graphs: dict[tuple[Any, ...], _Graph] = {}
        self.graphs_failed = False

    def __deepcopy__(self, memo: dict[int, Any]) -> _FastState:
        return _FastState()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_FastState, ())


_STATE_ATTR = "_lesa_fast_state"


def _state(module: nn.Module) -> _FastState:
    state = module.__dict__.get(_STATE_ATTR)
    if state is None:
        state = _FastState()
        module.__dict__[_STATE_ATTR] = state  # plain attribute: not a submodule, parameter or buffer
    return state


def _version_key(module: nn.Module) -> tuple[Any, ...] | None:
    """Identity, storage address and version counter of every parameter and buffer (``None`` if
    unavailable). A plain walk over ``_parameters``/``_buffers``/``_modules``: ``named_modules()`` costs
    several times more, on every forecast."""
    key: list[Any] = []
    stack: list[nn.Module] = [module]
    try:
        while stack:
            current = stack.pop()
            for tensor in itertools.chain(current._parameters.values(), current._buffers.values()):
                if tensor is not None:
                    key.append((id(tensor), tensor.data_ptr(), tensor._version))
            stack.extend(m for m in current._modules.values() if m is not None)
    except RuntimeError:  # inference tensors have no version counter
        return None
    return tuple(key)


def cuda_graphs_enabled() -> bool:
    """Whether forecasts on CUDA replay their coefficients from a CUDA graph here and now.

    :raises UsageError: if ``LESA_CUDA_GRAPHS`` is set to something that is not a flag.
    """
    enabled = _CUDA_GRAPHS.get()
    if enabled is not None:
        return enabled
    if not _ENV_CUDA_GRAPHS:
        _ENV_CUDA_GRAPHS.append(env_flag("LESA_CUDA_GRAPHS", default=True))
    return _ENV_CUDA_GRAPHS[0]


@contextlib.contextmanager
def cuda_graphs(enabled: bool) -> Iterator[None]:
    """Turn the CUDA-graph replay of coefficients on or off inside the ``with`` block (this thread or
    task only; the previous setting comes back on exit)::

        with cuda_graphs(False):
            image = pipe(prompt).images[0]      # coefficients evaluated eagerly on CUDA
    """
    token = _CUDA_GRAPHS.set(bool(enabled))
    try:
        yield
    finally:
        _CUDA_GRAPHS.reset(token)


def _plain_evaluation(module: nn.Module) -> bool:
    if module.training or torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())


def fast_coefficients(module: nn.Module, fn: CoefficientFn, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
    """``fn(inputs)``, memoised for host inputs and graph-replayed for CUDA inputs (module docstring).

    :param module: the predictor ``fn`` belongs to (its parameters key the caches).
    :param fn: computes ``(coef, bias)`` from the times and steps of ``inputs``.
    """
    if _plain_evaluation(module):
        return fn(inputs)
    device = inputs.t.device
    if inputs.scalars is not None or device.type == "cpu":
        return _memoised(module, fn, inputs)
    if device.type == "cuda" and cuda_graphs_enabled():
        return _graphed(module, fn, inputs)
    return fn(inputs)


def _memoised(module: nn.Module, fn: CoefficientFn, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
    """Memoised per host values: the input's ``scalars``, else the values of its CPU tensors."""
    tensors = (inputs.times, inputs.steps, inputs.t, inputs.step)
    if inputs.scalars is not None:
        scalars = inputs.scalars
        values: tuple[Any, ...] = (tuple(scalars[0]), tuple(scalars[1]), scalars[2], scalars[3])
    elif all(t.device.type == "cpu" for t in tensors):
        values = tuple(tuple(t.reshape(-1).tolist()) for t in tensors)
    else:
        return fn(inputs)
    version = _version_key(module)
    if version is None:
        return fn(inputs)
    key = (len(inputs.features), *values, *((t.device, t.dtype) for t in tensors), version)
    state = _state(module)
    found = state.memo.get(key)
    if found is None:
        coef, bias = fn(inputs)
        found = (coef.detach(), bias.detach())
        if len(state.memo) >= MEMO_SIZE:
            state.memo.pop(next(iter(state.memo)))
        state.memo[key] = found
    return found


def _graphed(module: nn.Module, fn: CoefficientFn, inputs: ForecastInput) -> tuple[Tensor, Tensor]:
    state = _state(module)
    if state.graphs_failed:
        return fn(inputs)
    tensors = (inputs.times, inputs.steps, inputs.t, inputs.step)
    version = _version_key(module)
    if version is None or any(t.device != inputs.t.device for t in tensors):
        return fn(inputs)
    key = (len(inputs.features), inputs.t.device, *(t.shape for t in tensors), *(t.dtype for t in tensors),
           version)
    entry = state.graphs.get(key)
    if entry is None:
        try:
            entry = _capture(state, fn, inputs)
        except Exception as exc:  # capture is an optimisation: never let it break a forecast
            state.graphs_failed = True
            state.graphs.clear()
            logger.warning("LESA: CUDA-graph capture of %s's coefficients failed (%s: %s); evaluating them "
                           "eagerly from now on", type(module).__name__, type(exc).__name__, exc)
            return fn(inputs)
        if len(state.graphs) >= 64:  # parameters moved or changed many times: start over
            state.graphs.clear()
        state.graphs[key] = entry
    with torch.inference_mode(False), torch.no_grad():
        for static, value in zip(entry.inputs, tensors, strict=True):
            static.copy_(value, non_blocking=True)
    entry.graph.replay()
    return entry.outputs


def _capture(state: _FastState, fn: CoefficientFn, inputs: ForecastInput) -> _Graph:
    """Capture ``fn`` on static copies of the time tensors (warm-up on a side stream first)."""
    with torch.inference_mode(False), torch.no_grad():
        static = tuple(t.detach().clone() for t in (inputs.times, inputs.steps, inputs.t, inputs.step))
        static_inputs = dataclasses.replace(inputs, times=static[0], steps=static[1], t=static[2], step=static[3])
        side = torch.cuda.Stream(device=inputs.t.device)
        side.wait_stream(torch.cuda.current_stream(inputs.t.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                fn(static_inputs)
        torch.cuda.current_stream(inputs.t.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a private memory pool per graph: replays may come in any order
            coef, bias = fn(static_inputs)
    return _Graph(graph, (static[0], static[1], static[2], static[3]), (coef, bias))
