"""The recipe over the zoo (``lesa bench --quality --zoo``): every trained model, one table.

For each registered model source that is trained (:attr:`~lesa_core.interfaces.model.ModelSource.trained`)
and each setting asked for (the model's own sampling call, plus call overrides such as ``true_cfg_scale: 1``
— another setting of the same model with other dynamics), :func:`check_recipe`

1. trains ``lesa`` with **the one default recipe** (:func:`recipe_config`): the model's tap, router and
   policy, ``predictor: kan`` with nothing else set, and the library's training defaults — the start chosen
   on the validation slice and the best epoch kept (:mod:`lesa_core.trainer.selection`);
2. fits the closed-form ``linear`` peer on the same trajectories;
3. fits, for the same trained ``lesa`` predictor (its trained family's weights when the floor kept a
   candidate bound to N's steps: :func:`~lesa_workflows.bench.any_schedule.any_schedule_bundle`; so is
   ``lesa`` at the longer interval), the ``learned`` schedule with as many full passes as the
   longer interval spends (:func:`learned_schedule`: searched on the teacher-forced error of the training
   trajectories, then refined in closed loop on the collection's prompts, as ``lesa train --fit-policy
   learned`` does), and alternates it once with training
   (:func:`~lesa_workflows.bench.alternating.train_alternating`: a predictor trained for those steps, the steps
   refitted for it, kept only if that pair beats the learned schedule's on the validation slice);
4. samples ``eval_prompts`` held-out samples (prompt i of the source's held-out
   list, seed 10 000 + i; a source with fewer held-out prompts repeats them with new seeds;
   :func:`lesa_core.sources.held_out_samples`) with full compute, ``lesa``, ``linear``, reuse,
   Taylor-1, Taylor-2 at the policy's N, ``lesa`` and Taylor-1 at a longer interval (fewer full passes),
   ``lesa`` on the learned schedule of that many passes, and the alternated pair.

Every row carries its per-image PSNR, so :meth:`ZooReport.markdown` states the paired differences the
recipe is held to: ``lesa`` − the best training-free method at N, ``lesa`` at the longer interval − that
same best at N (and ``lesa`` on the learned schedule of as many passes, and the alternated pair, − that best),
and ``lesa`` − ``linear`` (mean ± standard error over the prompts). The full-step schedule (warm-up E, phase,
forced full steps) is printed with every N.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lesa_core.interfaces.model import ModelSource
from lesa_core.metrics import paired_difference as paired

PEERS = {"reuse": 0, "taylor1": 1, "taylor2": 2}
"""The training-free methods and their Taylor order."""


def schedule_text(policy: dict[str, Any]) -> str:
    """The full-step schedule in words: ``N = 7, E = 3, phase E + N − 1, forced [3]``."""
    n, e = policy.get("interval", 7), policy.get("warmup", 3)
    phase = policy.get("phase")
    forced = list(policy.get("force_full", [3]))
    return (
        f"N = {n}, E = {e}, phase {'E + N − 1' if phase is None else phase}, "
        f"forced {forced if forced else 'none'}"
    )


def recipe_config(source: ModelSource, num_steps: int | None = None) -> dict[str, Any]:
    """The one default recipe on ``source``: its model facts (tap, router, policy), ``predictor: kan`` and the
    library's training defaults (:class:`~lesa_core.config.TrainingConfig`), nothing model-specific; only the
    step count may be set (``num_steps``)."""
    base = source.default_config()
    config: dict[str, Any] = {
        k: base[k] for k in ("model", "tap", "router", "policy") if base.get(k) is not None
    }
    config["predictor"] = {"name": "kan"}
    if num_steps is not None:
        config["training"] = {"num_steps": num_steps}
    return config


@dataclass
class ZooSetting:
    """One model at one setting: the rows, the timings and what selection chose."""

    model: str
    setting: str
    steps: int
    policy: dict[str, Any]
    long_interval: int
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)

    def per_image(self, name: str) -> list[float]:
        return list(self.rows[name]["psnr_per_image"])

    def best_free(self) -> str:
        """The training-free method with the highest mean PSNR at the policy's N."""
        return max(PEERS, key=lambda n: self.rows[n]["psnr"])

    @property
    def learned_row(self) -> str | None:
        """The name of the ``lesa`` row on a learned schedule (``lesa-learned@B``), if this setting has one."""
        return self._row("lesa-learned@")

    @property
    def alternating_row(self) -> str | None:
        """The name of the alternated schedule-and-predictor row (``lesa-alternating@B``), if this setting has one."""
        return self._row("lesa-alternating@")

    def _row(self, prefix: str) -> str | None:
        return next((name for name in self.rows if name.startswith(prefix)), None)

    def checks(self) -> dict[str, tuple[float, float]]:
        """The recipe's paired differences (see the module docstring)."""
        best = self.best_free()
        longer = f"lesa@N{self.long_interval}"
        at_n = f"{best}@N{self.policy.get('interval')}"
        extra = {
            f"{row} − {at_n}": paired(self.per_image(row), self.per_image(best))
            for row in (self.learned_row, self.alternating_row)
            if row is not None
        }
        return {
            f"lesa − {best}": paired(self.per_image("lesa"), self.per_image(best)),
            f"{longer} − {at_n}": paired(
                self.per_image(longer), self.per_image(best)
            ),
            **extra,
            "lesa − linear": paired(self.per_image("lesa"), self.per_image("linear")),
        }


def check_recipe(
    source: ModelSource,
    model: str,
    *,
    out: str | Path,
    setting: str = "default",
    call: dict[str, Any] | None = None,
    num_steps: int | None = None,
    eval_prompts: int = 64,
    long_interval: int = 10,
    device: str = "cpu",
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> ZooSetting:
    """Train the recipe and the ``linear`` peer on ``source`` (with ``call`` overriding its sampling call) and
    evaluate every method on ``eval_prompts`` held-out prompts (module docstring); trajectories, bundles and
    ``setting.json`` go under ``out``."""
    from lesa_core.run import resolve_run
    from lesa_core.sources import held_out_samples, training_prompts
    from lesa_core.trainer import PipelineRunner, train
    from lesa_workflows.bench.alternating import train_alternating
    from lesa_workflows.bench.any_schedule import any_schedule_bundle
    from lesa_workflows.evaluate import evaluate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = recipe_config(source, num_steps)
    run = resolve_run(config)
    call_kwargs = {**source.call_defaults(), **(call or {})}
    steps = run.config.training.num_steps
    policy = run.policy.as_dict()
    result = ZooSetting(model, setting, steps, policy, long_interval)
    pipe = source.load(device)
    runner = PipelineRunner(pipe, **call_kwargs)
    prompts = training_prompts(run.config.training, source)
    load = os.getloadavg()[0]
    began = time.perf_counter()
    log(f"{model} / {setting}: training lesa (predictor: kan, the default recipe)")
    bundle, report = train(
        pipe,
        config,
        prompts,
        runner=runner,
        out=out / "lesa",
        data_dir=out / "data",
        checkpoint_dir=out / "checkpoint-lesa",
        show_progress=show_progress,
    )
    result.seconds["collect_and_train_lesa"] = time.perf_counter() - began
    result.seconds.update({f"lesa_{k}": v for k, v in report.seconds.items()})
    result.selection = {"lesa": report.selection, "losses": report.losses}
    # the rows on other schedules (longer N, learned, alternated) need a predictor that is not bound to N's steps
    anywhere = any_schedule_bundle(pipe, run, bundle, prompts, runner=runner, out=out / "lesa-any-schedule",
                                   data_dir=out / "data", checkpoint_dir=out / "checkpoint-lesa",
                                   show_progress=show_progress)
    began = time.perf_counter()
    log(f"{model} / {setting}: fitting linear")
    linear, linear_report = train(
        pipe,
        {**config, "predictor": {"name": "linear"}},
        prompts,
        runner=runner,
        out=out / "linear",
        data_dir=out / "data",
        checkpoint_dir=out / "checkpoint-linear",
        show_progress=show_progress,
    )
    result.seconds["train_linear"] = time.perf_counter() - began
    result.selection["linear"] = linear_report.selection
    result.load_average = [load, os.getloadavg()[0]]

    shared = {"tap": run.config.tap, "router": run.router.as_dict()}
    longer = {**policy, "interval": long_interval}

    def peer(order: int, pol: dict[str, Any]) -> dict[str, Any]:
        return {**shared, "policy": pol, "predictor": {"name": "taylor", "order": order}}

    budget = full_passes(longer, steps)
    began = time.perf_counter()
    log(f"{model} / {setting}: fitting lesa's learned schedule of {budget} full passes")
    learned = learned_schedule(anywhere, out / "data", budget, pipe, runner=runner, show_progress=show_progress)
    result.seconds["fit_learned_schedule"] = time.perf_counter() - began
    result.selection["learned_schedule"] = learned["steps"]
    began = time.perf_counter()
    log(f"{model} / {setting}: training a predictor for that schedule, then refitting the schedule to it")
    alternation = train_alternating(
        pipe, run, anywhere, learned, prompts, runner=runner, out=out / "alternating",
        data_dir=out / "data", checkpoint_dir=out / "checkpoint-alternating", show_progress=show_progress)
    result.seconds["train_alternating"] = time.perf_counter() - began
    result.selection["alternating"] = asdict(alternation)
    methods: dict[str, Any] = {
        "full": None,
        "lesa": {"bundle": str(bundle)},
        "linear": {"bundle": str(linear)},
        **{name: peer(order, policy) for name, order in PEERS.items()},
        f"lesa@N{long_interval}": {"bundle": str(anywhere), "policy": longer},
        f"taylor1@N{long_interval}": peer(1, longer),
        f"lesa-learned@{budget}": {"bundle": str(anywhere), "policy": learned},
        f"lesa-alternating@{budget}": alternation.method,
    }
    held_out, seeds = held_out_samples(source, eval_prompts)
    distinct = len(set(held_out))
    log(f"{model} / {setting}: evaluating {len(methods)} methods on {len(held_out)} held-out samples "
        f"({distinct} prompts)")
    began = time.perf_counter()
    results = evaluate(
        pipe,
        methods,
        held_out,
        seeds,
        num_steps=steps,
        call_kwargs=call_kwargs,
        source=source,
        show_progress=show_progress,
        reference_tap=run.config.tap,
        quality_only=True,  # the zoo table reports quality: the methods' shared warm-up is computed once
    )
    result.seconds["evaluate"] = time.perf_counter() - began
    result.rows = {
        r.name: {
            "psnr": r.psnr,
            "ssim": r.ssim,
            "full_passes": r.full_passes,
            "psnr_per_image": list(r.psnr_per_image),
        }
        for r in results
        if r.name != "full"
    }
    (out / "setting.json").write_text(json.dumps(asdict(result), indent=1, default=str) + "\n")
    return result


def full_passes(policy: dict[str, Any], num_steps: int) -> int:
    """How many of ``num_steps`` steps the (step-index driven) ``policy`` computes in full."""
    from lesa_core.run import resolve_run

    return resolve_run({"policy": policy}).plugins.make_policy().num_full_passes(num_steps)


def learned_schedule(bundle: Path, data: Path, budget: int, pipe: Any, *, runner: Any = None,
                     show_progress: bool = True) -> dict[str, Any]:
    """The ``learned`` policy of ``budget`` full passes for ``bundle``'s predictor: the schedule that minimises
    its teacher-forced, Δσ-weighted error on the first training trajectories of the store in ``data`` (what
    ``lesa bench --frontier``'s ``lesa-learned`` fits), then — given the ``runner`` that collected them —
    refined in closed loop on the collection's prompts as ``lesa train --fit-policy learned`` does
    (:mod:`lesa_core.trainer.policy_refine`, ``training.refine_policy`` samplings)."""
    from lesa_core.assembly import assemble, find_transformer
    from lesa_core.trainer import TrajectoryStore
    from lesa_core.trainer.policy_fit import FIT_ROWS
    from lesa_core.trainer.policy_refine import refine_run_policy
    from lesa_core.trainer.schedule_error import TeacherForcedScheduleError
    from lesa_workflows.bench.frontier import learned_policy

    predictor = assemble(find_transformer(pipe), str(bundle)).predictor
    store = TrajectoryStore(data / "trajectories")
    meta = store.read_meta()
    assert meta is not None and meta.schedule is not None
    fitted = learned_policy(TeacherForcedScheduleError(predictor, store.load(), meta.schedule, max_rows=FIT_ROWS),
                            budget)
    if runner is None:
        return fitted
    assembly = assemble(find_transformer(pipe), {"bundle": str(bundle), "policy": fitted})
    run, _ = refine_run_policy(assembly, runner, meta, store.load_outputs, show_progress=show_progress)
    return run.policy.as_dict()


@dataclass
class ZooReport:
    """Every model and setting of one zoo run."""

    settings: list[ZooSetting] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"settings": [asdict(s) for s in self.settings]}

    def markdown(self) -> str:
        """One table of PSNR (dB) per model and setting, then the recipe's paired checks."""
        lines = [
            "| model | setting | steps | full-step schedule | full passes | lesa | linear | reuse | taylor1 | "
            "taylor2 | lesa, longer N (full passes) | taylor1, longer N | lesa, learned schedule (full passes) | "
            "lesa, alternating (full passes) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in self.settings:
            longer = f"lesa@N{s.long_interval}"
            learned_cell, alternating_cell = (
                "—" if row is None else f"{s.rows[row]['psnr']:.2f} ({s.rows[row]['full_passes']:g})"
                for row in (s.learned_row, s.alternating_row)
            )
            lines.append(
                f"| {s.model} | {s.setting} | {s.steps} | {schedule_text(s.policy)} | {s.rows['lesa']['full_passes']:g} | "
                + " | ".join(
                    f"{s.rows[n]['psnr']:.2f}" for n in ("lesa", "linear", "reuse", "taylor1", "taylor2")
                )
                + f" | {s.rows[longer]['psnr']:.2f} (N = {s.long_interval}, {s.rows[longer]['full_passes']:g}) | "
                f"{s.rows[f'taylor1@N{s.long_interval}']['psnr']:.2f} | {learned_cell} | {alternating_cell} |"
            )
        lines += ["", "| model | setting | check | Δ dB ± s.e. (paired, per image) |", "|---|---|---|---|"]
        for s in self.settings:
            for name, (mean, se) in s.checks().items():
                lines.append(f"| {s.model} | {s.setting} | {name} | {mean:+.2f} ± {se:.2f} |")
        return "\n".join(lines) + "\n"


def trained_sources(host: Any) -> dict[str, ModelSource]:
    """Every registered model source that is trained, by name."""
    sources = {name: host.models.get(name)() for name in host.models.names()}
    return {name: source for name, source in sources.items() if getattr(source, "trained", True)}


def run_zoo(
    sources: dict[str, ModelSource],
    *,
    out: str | Path,
    settings: dict[str, dict[str, Any]] | None = None,
    eval_prompts: int = 64,
    long_interval: int = 10,
    device: str = "cpu",
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> ZooReport:
    """:func:`check_recipe` on every source and setting (``settings``: name → call overrides; default the
    model's own call only); writes ``zoo.json`` and ``zoo.md`` into ``out``."""
    out = Path(out)
    report = ZooReport()
    for model, source in sources.items():
        for setting, call in (settings or {"default": {}}).items():
            report.settings.append(
                check_recipe(
                    source,
                    model,
                    out=out / model / setting,
                    setting=setting,
                    call=call,
                    eval_prompts=eval_prompts,
                    long_interval=long_interval,
                    device=device,
                    show_progress=show_progress,
                    log=log,
                )
            )
            (out / "zoo.json").write_text(json.dumps(report.to_json(), indent=1, default=str) + "\n")
            (out / "zoo.md").write_text(report.markdown())
    return report
