"""The methods a speed benchmark compares, each attached and detached the way its users do it.

Every method sees the same bare-transformer loop (:mod:`lesa_workflows.bench.timing`) and is tuned to the
same number of full passes (10 of 50 steps by default):

``full``
    nothing attached.
``lesa``
    the paper's setting through :func:`lesa_core.attach`, exactly as a trained bundle runs: a
    stage-aware ``kan`` predictor (taps [4, 8, 8], relative time encoding) is saved as a bundle
    (untrained weights: speed does not depend on them) and attached from that folder, with the
    ``threshold`` router [0.9, 0.5] and the ``interval`` policy N = 7, E = 3, ``force_full = [3]``;
    ``guard_non_finite: false`` (the guard costs one host sync per forecast).
``taylor1``
    this framework's ``taylor`` predictor, order 1, same policy.
``diffusers-taylorseer`` / ``diffusers-taylorseer-lite``
    diffusers' own ``TaylorSeerCacheConfig`` (defaults, ``use_lite_mode`` for the second) with
    ``cache_interval = N`` and ``disable_cache_before_step = E``: it computes steps s < E and
    (s − E − 1) % N == 0, which is 10 of 50 for N = 7, E = 3. The default mode caches the attention
    outputs only (MLPs run every step); lite mode skips whole blocks and forecasts ``proj_out``.
``cache-dit``
    cache-dit's DBCache (F1B0) with its TaylorSeer calibrator (order 1) and a static step mask equal
    to LESA's schedule; it runs on its own copy of the transformer (cache-dit patches the instance and
    leaves a ``forward`` attribute behind after ``disable_cache``). Skipped when not installed.

Full passes are counted with a forward hook on the first block's attention query projection
(``transformer_blocks[0].attn.to_q``; for cache-dit, which always runs its first F blocks, on block F):
it runs exactly when that block's attention is computed, whatever the method.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = [
    "DEFAULT_METHODS",
    "EXTRA_METHODS",
    "Method",
    "PolicySpec",
    "make_method",
    "reachable_tensor_bytes",
]

DEFAULT_METHODS = ("full", "lesa", "taylor1", "diffusers-taylorseer", "diffusers-taylorseer-lite", "cache-dit")
EXTRA_METHODS = ("lesa-eager",)
"""Variants for measuring the fast path itself: ``lesa-eager`` is ``lesa`` with CUDA graphs off."""


@dataclass(frozen=True)
class PolicySpec:
    """The shared schedule: warm-up E, interval N, forced full steps (LESA's defaults: 3, 7, [3])."""

    interval: int = 7
    warmup: int = 3
    force_full: tuple[int, ...] = (3,)

    def as_config(self) -> dict[str, Any]:
        return {"name": "interval", "interval": self.interval, "warmup": self.warmup,
                "force_full": list(self.force_full)}

    def mask(self, steps: int) -> list[int]:
        """1 for the steps LESA's ``interval`` policy computes (its documented rule)."""
        anchor = self.warmup + self.interval - 1
        return [int(s < self.warmup or s in self.force_full
                    or (s >= anchor and (s - anchor) % self.interval == 0)) for s in range(steps)]


def reachable_tensor_bytes(root: Any, *, max_depth: int = 8) -> int:
    """Bytes of the distinct tensor storages reachable from ``root`` through containers and plain
    objects' attributes (modules, parameters and buffers of modules are not followed)."""
    seen_objects: set[int] = set()
    seen_storages: dict[int, int] = {}

    def visit(obj: Any, depth: int) -> None:
        if depth > max_depth or id(obj) in seen_objects:
            return
        seen_objects.add(id(obj))
        if isinstance(obj, nn.Parameter | nn.Module):
            return
        if isinstance(obj, Tensor):
            storage = obj.untyped_storage()
            seen_storages[storage.data_ptr()] = storage.nbytes()
            return
        if isinstance(obj, dict):
            for value in obj.values():
                visit(value, depth + 1)
        elif isinstance(obj, list | tuple | set | frozenset):
            for value in obj:
                visit(value, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            for value in vars(obj).values():
                visit(value, depth + 1)
        elif hasattr(obj, "__slots__"):
            for name in obj.__slots__:
                visit(getattr(obj, name, None), depth + 1)

    visit(root, 0)
    return sum(seen_storages.values())


class Method:
    """One compared method: attach before a trajectory's timing, detach after.

    :ivar name: the name in the report.
    :ivar skipped: why the method cannot run here (``None`` if it can).
    """

    name = "method"

    def __init__(self) -> None:
        self.skipped: str | None = None

    def prepare(self, model: nn.Module) -> None:
        """One-time set-up (outside any timing)."""

    def attach(self, model: nn.Module) -> nn.Module:
        """Attach to ``model`` and return the module the loop must call."""
        return model

    def before_trajectory(self) -> None:
        """Forget any state of a previous trajectory (outside the timing)."""

    def cache_bytes(self) -> int | None:
        """Bytes of cache state held right after a trajectory (read before :meth:`detach`)."""
        return None

    def detach(self) -> None:
        """Undo :meth:`attach`."""

    def probe(self, model: nn.Module) -> nn.Module:
        """The module whose forward calls are counted as full passes."""
        return _first_block(model).attn.to_q

    def close(self) -> None:
        """Release what :meth:`prepare` built."""


def _first_block(model: nn.Module, index: int = 0) -> Any:
    blocks = [*getattr(model, "transformer_blocks", ()), *getattr(model, "single_transformer_blocks", ())]
    return blocks[index]


class FullCompute(Method):
    name = "full"


class LesaMethod(Method):
    """The LESA runtime through :func:`lesa_core.attach` (from a bundle folder when ``bundle``)."""

    def __init__(self, name: str, config: dict[str, Any], *, bundle: bool = False, cuda_graphs: bool = True) -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.bundle = bundle
        self.cuda_graphs = cuda_graphs
        self._graphs: contextlib.ExitStack | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._source: Any = config
        self._predictor: Any = None
        self.handle: Any = None

    def prepare(self, model: nn.Module) -> None:
        if not self.bundle:
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="lesa-bench-")
        self._source = str(write_untrained_bundle(model, self.config, Path(self._tmp.name) / "bundle"))

    def attach(self, model: nn.Module) -> nn.Module:
        import lesa_core
        from lesa_core.interfaces.coefficients import cuda_graphs, cuda_graphs_enabled

        self._graphs = contextlib.ExitStack()
        self._graphs.enter_context(cuda_graphs(self.cuda_graphs and cuda_graphs_enabled()))
        # the first attach builds the predictor (from the bundle); later ones reuse it, as a process
        # that keeps LESA attached across generations does (its memoised coefficients included)
        self.handle = lesa_core.attach(model, self._source, predictor=self._predictor)
        self._predictor = self.handle.predictor
        return model

    def before_trajectory(self) -> None:
        self.handle.reset()

    def cache_bytes(self) -> int | None:
        stats = self.handle.stats()
        return max((int(s["cache_bytes"]) for s in stats.values()), default=0)

    def detach(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        if self._graphs is not None:
            self._graphs.close()
            self._graphs = None

    def close(self) -> None:
        self._predictor = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def write_untrained_bundle(model: nn.Module, config: dict[str, Any], path: Path) -> Path:
    """Save the predictor :func:`lesa_core.assembly.assemble` builds for ``config`` as a bundle, the
    way :func:`lesa_core.trainer.train` saves a trained one (fp32 weights, full metadata)."""
    from lesa_core.assembly import assemble
    from lesa_core.bundle import save_bundle
    from lesa_core.plugins import get_plugin_host

    host = get_plugin_host()
    assembly = assemble(model, config, host=host)
    metadata = assembly.bundle_metadata(host, schedule=None, extra={"untrained": True, "purpose": "speed bench"})
    return save_bundle(path, assembly.predictor.float(), metadata)


_TAYLORSEER_HOOK = "taylorseer_cache"


class DiffusersTaylorSeer(Method):
    """diffusers' ``TaylorSeerCacheConfig`` through ``enable_cache`` (default or lite mode)."""

    def __init__(self, policy: PolicySpec, *, lite: bool) -> None:
        super().__init__()
        self.name = "diffusers-taylorseer-lite" if lite else "diffusers-taylorseer"
        self.lite = lite
        self.policy = policy
        self.model: Any = None

    def attach(self, model: nn.Module) -> nn.Module:
        from diffusers import TaylorSeerCacheConfig

        config = TaylorSeerCacheConfig(cache_interval=self.policy.interval,
                                       disable_cache_before_step=self.policy.warmup, use_lite_mode=self.lite)
        with _quiet("diffusers"):
            model.enable_cache(config)  # type: ignore[operator]
        self.model = model
        return model

    def before_trajectory(self) -> None:
        from lesa_adapters import reset_stateful_hooks

        reset_stateful_hooks(self.model)

    def cache_bytes(self) -> int | None:
        """Bytes of every stored Taylor factor of every hooked module."""
        from lesa_adapters import hook_states

        return reachable_tensor_bytes([state.taylor_factors for state in hook_states(self.model, _TAYLORSEER_HOOK)])

    def detach(self) -> None:
        if self.model is not None:
            self.model.disable_cache()
            self.model = None


class CacheDit(Method):
    """cache-dit DBCache + TaylorSeer calibrator with a static step mask, on a private model copy."""

    name = "cache-dit"

    def __init__(self, policy: PolicySpec, steps: int, *, fn_blocks: int = 1) -> None:
        super().__init__()
        self.policy = policy
        self.steps = steps
        self.fn_blocks = fn_blocks
        self.copy: Any = None
        # cache-dit logs every context at INFO level to stdout, which must hold only the report
        os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "WARNING")
        try:
            import cache_dit.logger
        except Exception as exc:  # not installed, or broken beside this torch/diffusers
            self.skipped = f"cache-dit is not importable here ({type(exc).__name__}: {exc}); pip install cache-dit"
            return
        handler = getattr(cache_dit.logger, "_default_handler", None)
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)

    def prepare(self, model: nn.Module) -> None:
        import cache_dit
        from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig

        self.copy = copy.deepcopy(model)
        config = DBCacheConfig(
            Fn_compute_blocks=self.fn_blocks, Bn_compute_blocks=0, max_warmup_steps=0,
            num_inference_steps=self.steps, steps_computation_mask=self.policy.mask(self.steps),
            steps_computation_policy="static",
        )
        with _quiet("cache_dit"):
            cache_dit.enable_cache(self.copy, cache_config=config,
                                   calibrator_config=TaylorSeerCalibratorConfig(taylorseer_order=1))

    def attach(self, model: nn.Module) -> nn.Module:
        return self.copy

    def cache_bytes(self) -> int | None:
        """Bytes of the tensors held by cache-dit's contexts (residual buffers, calibrator states)."""
        manager = getattr(self.copy, "_context_manager", None)
        return None if manager is None else reachable_tensor_bytes(manager)

    def probe(self, model: nn.Module) -> nn.Module:
        return _first_block(self.copy, self.fn_blocks).attn.to_q

    def close(self) -> None:
        self.copy = None


class _quiet:
    """Lower one library's logger to warnings for the duration (cache-dit logs every context)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def lesa_config(predictor: dict[str, Any], policy: PolicySpec) -> dict[str, Any]:
    """A run config: ``predictor``, LESA's router and ``policy``, no non-finite guard (speed path)."""
    return {"predictor": predictor, "router": {"name": "threshold", "boundaries": [0.9, 0.5]},
            "policy": policy.as_config(), "guard_non_finite": False}


def make_method(name: str, policy: PolicySpec, steps: int) -> Method:
    """The method called ``name`` (see :data:`DEFAULT_METHODS`)."""
    if name == "full":
        return FullCompute()
    if name in ("lesa", "lesa-eager"):
        kan = {"name": "kan", "taps": [4, 8, 8], "time_encoding": "relative"}
        return LesaMethod(name, lesa_config(kan, policy), bundle=True, cuda_graphs=name == "lesa")
    if name == "taylor1":
        return LesaMethod("taylor1", lesa_config({"name": "taylor", "order": 1}, policy))
    if name in ("diffusers-taylorseer", "diffusers-taylorseer-lite"):
        return DiffusersTaylorSeer(policy, lite=name.endswith("-lite"))
    if name == "cache-dit":
        return CacheDit(policy, steps)
    raise KeyError(f"unknown bench method '{name}'; known: {', '.join(DEFAULT_METHODS + EXTRA_METHODS)}")
