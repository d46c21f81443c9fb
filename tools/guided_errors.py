"""Teacher-forced forecast errors per guidance branch and in the guided combination, on a trajectory store.

::

    python -m tools.guided_errors DATA_DIR [--interval 7 --warmup 3 --force-full 3] [--validation 8]

For a store collected with true classifier-free guidance (contexts ``cond`` and ``uncond``, the scale in
the collection's call) it prints, summed over every forecast step of the ``interval`` policy, the mean
squared error of reuse and Taylor-1 per branch and in the combination the sampler moves along
(``uncond + g (cond − uncond)``), and, on the last ``--validation`` prompts, the guided error of a closed-form
fit per forecast step (last three full-pass taps + bias, scalar weights) fitted on the other prompts per
branch or on the guided sequence — all relative to reuse (docs/results.md, "On the video model training
never beats reuse"). A one-off analysis: not used by the library.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from lesa_core.interfaces import Decision
from lesa_core.plugins import get_plugin_host
from lesa_core.trainer.losses import guidance_weights
from lesa_core.trainer.store import TrajectoryStore


def full_steps(num_steps: int, interval: int, warmup: int, force_full: list[int]) -> list[int]:
    """The steps the registered ``interval`` policy computes."""
    policy_cls = get_plugin_host().policies.get("interval")
    policy = policy_cls(policy_cls.Config(interval=interval, warmup=warmup, force_full=force_full))
    return [s for s, d in enumerate(policy.schedule(num_steps)) if d is Decision.COMPUTE]


def ridge(seqs: list[Tensor], history: list[int], step: int, lam: float = 1e-3) -> Tensor:
    """Scalar weights over ``history`` taps + bias minimising the squared error at ``step`` over ``seqs``."""
    columns = [torch.cat([q[:, j].flatten() for q in seqs]) for j in history]
    x = torch.stack([*columns, torch.ones_like(columns[0])], 1)
    y = torch.cat([q[:, step].flatten() for q in seqs])
    return torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("--interval", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--force-full", type=int, nargs="*", default=[3])
    ap.add_argument("--validation", type=int, default=8)
    args = ap.parse_args()
    store = TrajectoryStore(f"{args.data_dir}/trajectories")
    meta, taps = store.read_meta(), store.load()
    assert meta is not None
    weights = guidance_weights(list(taps), meta.call)
    if weights is None:
        raise SystemExit(f"the store's contexts are {sorted(taps)}, not a true-CFG cond/uncond pair")
    cond, uncond = taps["cond"].double(), taps["uncond"].double()
    scale = float(weights[list(taps).index("cond")])
    guided = uncond + scale * (cond - uncond)
    full = full_steps(meta.num_steps, args.interval, args.warmup, args.force_full)
    train, held = slice(0, cond.shape[0] - args.validation), slice(cond.shape[0] - args.validation, None)
    totals: dict[str, float] = {}

    def add(name: str, forecast: Tensor, truth: Tensor) -> None:
        totals[name] = totals.get(name, 0.0) + float((forecast - truth).pow(2).mean())

    for step in range(meta.num_steps):
        history = [s for s in full if s < step][-3:]
        if step in full or len(history) < 2:
            continue
        last, before = history[-1], history[-2]
        factor = (step - last) / (last - before)
        for name, seq in (("cond", cond), ("uncond", uncond), ("guided", guided)):
            add(f"reuse {name}", seq[:, last], seq[:, step])
            add(f"taylor1 {name}", seq[:, last] + factor * (seq[:, last] - seq[:, before]), seq[:, step])
        add("held-out reuse", guided[held, last], guided[held, step])
        for name, seqs in (("per branch", [cond[train], uncond[train]]), ("on the guided sequence", [guided[train]])):
            w = ridge(seqs, history, step) if len(history) == 3 else None
            if w is not None:
                forecast = sum(w[k] * guided[held, j] for k, j in enumerate(history)) + w[-1]
                add(f"held-out fit {name}", forecast, guided[held, step])
            else:
                add(f"held-out fit {name}", guided[held, last], guided[held, step])
    print(f"guidance {scale:g}; full steps {full}")
    for name in ("cond", "uncond", "guided"):
        print(f"  {name:7s} taylor1 / reuse: {totals[f'taylor1 {name}'] / totals[f'reuse {name}']:.3f}")
    for name in ("per branch", "on the guided sequence"):
        print(f"  held-out guided error, closed-form fit {name} / reuse: "
              f"{totals[f'held-out fit {name}'] / totals['held-out reuse']:.3f}")


if __name__ == "__main__":
    main()
