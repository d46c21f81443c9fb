"""Quality benchmark (``lesa bench --quality``): the paper's ablation on one model, beside the peers.

One run collects the training trajectories once, trains every variant of the run's learned predictor
on them (:func:`ablation_variants`), then samples held-out prompts with every variant and with the
training-free peers (reuse, Taylor order 1 and 2), all at the run's full-pass schedule, plus

* the run's predictor and Taylor-1 at a longer interval (``extra_interval``: fewer full passes),
* the run's predictor at other step counts than it was trained at (``steps_sweep``; meaningful for the
  ``relative`` time encoding, which has no step count in its shapes).

Fidelity is PSNR/SSIM of the decoded images against the same model's full-compute images of the same
prompt and seed. Every row also carries its per-image PSNR so that differences between two methods
can be read as paired differences (mean ± standard error over prompts), which is how
:meth:`QualityReport.markdown` states them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lesa_core import metrics
from lesa_core.errors import ConfigError
from lesa_core.interfaces.model import ModelSource
from lesa_core.outputs import claim_output_folder
from lesa_core.run import ResolvedRun
from lesa_core.sources import held_out_samples, training_prompts

LEARNED_FAMILIES = ("kan", "mlp")
"""Families with the shared ``taps``/``history`` structure that the ablation varies."""


@dataclass(frozen=True)
class Variant:
    """One trained configuration of the ablation.

    :ivar name: row name (``lesa`` is the run's own predictor).
    :ivar description: what differs from ``lesa``, in words.
    :ivar predictor: / :ivar router: the plugin specs (``{name, **params}``).
    :ivar stages: the training stages run (``(1, 2)`` or ``(1,)``).
    :ivar tap: the tap to train on, if not the run's (each tap needs its own collection).
    """

    name: str
    description: str
    predictor: dict[str, Any]
    router: dict[str, Any]
    stages: tuple[int, ...] = (1, 2)
    tap: str | None = None

    def config(self, run: ResolvedRun) -> ResolvedRun:
        """``run`` with this variant's predictor, router and (if set) tap."""
        changes: dict[str, Any] = {"predictor": self.predictor, "router": self.router}
        if self.tap is not None:
            changes["tap"] = self.tap
        return run.derive(**changes)


def ablation_variants(run: ResolvedRun, compare_taps: Sequence[str] = ()) -> list[Variant]:
    """The variants of the run's learned predictor, ``lesa`` (the run itself) first.

    * stage split on/off × time module KAN/MLP (the paper's ablation; "off" is one expert for every t,
      with the largest per-stage K);
    * stage 1 only vs stages 1 + 2;
    * the other history mode (``steps`` ↔ ``full``), with stages 1 + 2 and stage 1 only;
    * shared tap weights instead of per-channel ones (or the reverse);
    * for the ``relative`` encoding, the other ``relative_units``;
    * the run's predictor on each tap of ``compare_taps`` (each needs its own collection).

    :raises ConfigError: if the run's predictor is not one of :data:`LEARNED_FAMILIES`.
    """
    pred = run.predictor.as_dict()
    family = pred["name"]
    if family not in LEARNED_FAMILIES:
        raise ConfigError(
            f"the quality ablation varies a learned predictor of the families {', '.join(LEARNED_FAMILIES)}, "
            f"but the run's predictor is '{family}'; pass a run config with predictor kan or mlp",
            path="predictor.name",
        )
    other = "mlp" if family == "kan" else "kan"
    router = run.router.as_dict()
    taps = pred.get("taps", (4, 8, 8))
    single = max(taps) if isinstance(taps, list | tuple) else int(taps)
    flat = {"name": "threshold", "boundaries": []}
    history = pred.get("history", "full")
    swapped = "steps" if history == "full" else "full"
    variants = [
        Variant("lesa", f"{family}, stage-aware, stages 1 + 2, history {history}", pred, router),
        Variant(f"{family}-one-stage", f"{family}, one expert (K = {single}), stages 1 + 2",
                {**pred, "taps": single}, flat),
        Variant(other, f"{other}, stage-aware, stages 1 + 2", {**pred, "name": other}, router),
        Variant(f"{other}-one-stage", f"{other}, one expert (K = {single}), stages 1 + 2",
                {**pred, "name": other, "taps": single}, flat),
        Variant("lesa-stage1-only", f"{family}, stage-aware, stage 1 only", pred, router, (1,)),
        Variant(f"lesa-history-{swapped}", f"{family}, stage-aware, stages 1 + 2, history {swapped}",
                {**pred, "history": swapped}, router),
        Variant(f"lesa-history-{swapped}-stage1-only", f"{family}, stage-aware, stage 1 only, history {swapped}",
                {**pred, "history": swapped}, router, (1,)),
    ]
    per_channel = bool(pred.get("per_channel", False))
    variants.append(Variant("lesa-shared-weights" if per_channel else "lesa-per-channel",
                            f"{family}, stage-aware, stages 1 + 2, {'shared' if per_channel else 'per-channel'} "
                            "tap weights", {**pred, "per_channel": not per_channel}, router))
    if pred.get("time_encoding", "relative") == "relative":
        units = "spacing" if pred.get("relative_units", "flow") == "flow" else "flow"
        variants.append(Variant(f"lesa-units-{units}", f"{family}, stage-aware, stages 1 + 2, relative offsets "
                                f"in {units} units", {**pred, "relative_units": units}, router))
    for tap in compare_taps:
        if tap != run.config.tap:
            variants.append(Variant(f"lesa-tap-{tap}", f"{family}, stage-aware, stages 1 + 2, tap {tap}", pred, router,
                                    tap=tap))
    return variants


@dataclass
class Row:
    """One method evaluated at one setting."""

    section: str
    name: str
    steps: int
    interval: int
    full_passes: float
    psnr: float
    ssim: float
    psnr_per_image: list[float]
    adherence: float | None = None
    description: str = ""


@dataclass
class QualityReport:
    """Everything one quality benchmark measured."""

    model: str
    prompts: list[str]
    seeds: list[int]
    train_prompts: int
    rows: list[Row] = field(default_factory=list)
    train_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def row(self, section: str, name: str) -> Row:
        for r in self.rows:
            if r.section == section and r.name == name:
                return r
        raise KeyError(f"no row {name!r} in section {section!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        """The report as Markdown: one table per section, differences as paired mean ± s.e."""
        lines = [f"# Quality benchmark on the '{self.model}' model", "",
                 f"{len(self.prompts)} held-out prompts (seeds {self.seeds[0]}…{self.seeds[-1]}), "
                 f"predictors trained on {self.train_prompts} prompts. PSNR/SSIM of the decoded images against the "
                 "same model's full-compute images of the same prompt and seed. Δ = paired difference of "
                 "per-image PSNR against the first row of the table (mean ± standard error over prompts).", ""]
        policy = self.config.get("policy") or {}
        if policy.get("name") == "interval":
            from lesa_workflows.bench.zoo import schedule_text

            lines += [f"Full-step schedule: {schedule_text(policy)}: step s computes when s < E, s is forced, "
                      "or (s − phase) is a multiple of N (a section at another N changes N only).", ""]
        for section in dict.fromkeys(r.section for r in self.rows):
            rows = [r for r in self.rows if r.section == section and r.name != "full"]
            if not rows:
                continue
            first = rows[0]
            lines += [f"## {section}", "", "| method | steps | N | full passes | PSNR dB | Δ dB | SSIM | what |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in rows:
                delta = "—" if r is first else paired_difference(r.psnr_per_image, first.psnr_per_image)
                lines.append(f"| {r.name} | {r.steps} | {r.interval} | {r.full_passes:g} | {r.psnr:.2f} | {delta} | "
                             f"{r.ssim:.4f} | {r.description} |")
            lines.append("")
        if self.train_seconds:
            lines += ["Training seconds per variant (the first variant on a tap includes collecting it): "
                      + ", ".join(f"{k} {v:.0f}" for k, v in self.train_seconds.items())
                      + f". Whole benchmark: {self.seconds:.0f} s.", ""]
        return "\n".join(lines)


def paired_difference(values: Sequence[float], reference: Sequence[float]) -> str:
    """``"+1.23 ± 0.20"``: :func:`lesa_core.metrics.paired_difference` as text (the mean alone for one image)."""
    mean, se = metrics.paired_difference(values, reference)
    return f"{mean:+.2f}" if math.isnan(se) else f"{mean:+.2f} ± {se:.2f}"


def run_quality_bench(
    source: ModelSource,
    run: ResolvedRun,
    *,
    out: str | Path,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    eval_prompts: int = 16,
    steps_sweep: Sequence[int] = (30, 40),
    compare_taps: Sequence[str] = (),
    extra_interval: int | None = 10,
    model_name: str = "model",
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> QualityReport:
    """Train the ablation variants and evaluate them with the peers; write ``quality.json`` and
    ``quality.md`` (plus ``error_per_step.png`` for the main setting) into ``out``.

    :param run: the run config; its predictor (``kan`` or ``mlp``) is the ``lesa`` row, its policy the
        schedule every method shares (an ``interval`` policy: ``extra_interval`` changes its N).
    :param data_dir: where the shared trajectories go (default ``out/data``); reused when they match.
        A variant on another tap collects its own under ``data_dir/tap-<name>``.
    :param compare_taps: also train and evaluate the run's predictor on these taps.
    """
    from lesa_core.assembly import bind, find_transformer
    from lesa_core.trainer import PipelineRunner, train
    from lesa_workflows.bench.any_schedule import any_schedule_bundle
    from lesa_workflows.evaluate import evaluate
    from lesa_workflows.report import save_step_error_plot

    started = time.perf_counter()
    variants = ablation_variants(run, compare_taps)
    policy = run.policy.as_dict()
    if extra_interval and "interval" not in policy:
        raise ConfigError(f"extra_interval needs an interval policy, but the run's policy is '{policy['name']}'; "
                          "pass extra_interval=None (--extra-interval 0)", path="policy")
    out = claim_output_folder(out, command="lesa bench --quality", markers=("quality.json",))
    data = Path(data_dir) if data_dir else out / "data"
    pipe = source.load(device)
    for variant in variants:  # fail fast (an unknown tap or plugin) before any collection or training
        bind(find_transformer(pipe), variant.config(run))
    call = source.call_defaults()
    runner = PipelineRunner(pipe, **call)
    prompts = training_prompts(run.config.training, source)
    held_out, seeds = held_out_samples(source, eval_prompts)
    report = QualityReport(model=model_name, prompts=held_out, seeds=seeds, train_prompts=len(prompts),
                           config=run.to_dict())

    bundles: dict[str, str] = {}
    for variant in variants:
        log(f"training {variant.name}: {variant.description}")
        began = time.perf_counter()
        variant_data = data / f"tap-{variant.tap}" if variant.tap is not None else data
        bundle, _ = train(pipe, variant.config(run), prompts, runner=runner, out=out / "bundles" / variant.name,
                          data_dir=variant_data, checkpoint_dir=out / "checkpoints" / variant.name,
                          stages=variant.stages, show_progress=show_progress)
        report.train_seconds[variant.name] = time.perf_counter() - began
        bundles[variant.name] = str(bundle)

    steps = run.config.training.num_steps
    interval = int(policy.get("interval", 0))
    shared = {"router": run.router.as_dict(), "guard_non_finite": run.config.guard_non_finite}

    def peers(policy_: dict[str, Any], suffix: str = "", orders: Sequence[int] = (0, 1, 2),
              tap: str | None = None) -> dict[str, Any]:
        """The training-free peers on the run's tap (or on ``tap``, named ``<peer>-tap-<tap>``)."""
        names = {0: "reuse", 1: "taylor1", 2: "taylor2"}
        spec = {**shared, "tap": tap or run.config.tap}
        infix = f"-tap-{tap}" if tap else ""
        return {names[o] + infix + suffix: {**spec, "policy": policy_, "predictor": {"name": "taylor", "order": o}}
                for o in orders}

    descriptions = {v.name: v.description for v in variants}
    descriptions.update(reuse="FORA (Taylor order 0)", taylor1="TaylorSeer order 1", taylor2="TaylorSeer order 2")
    for tap in compare_taps:
        descriptions.update({f"{peer}-tap-{tap}": f"{descriptions[peer]}, tap {tap}"
                             for peer in ("reuse", "taylor1", "taylor2")})

    def record(section: str, results: Sequence[Any], num_steps: int, intervals: dict[str, int]) -> None:
        for r in results:
            base = r.name.split("@")[0]
            report.rows.append(Row(section=section, name=r.name, steps=num_steps, interval=intervals.get(r.name, interval),
                                   full_passes=r.full_passes, psnr=r.psnr, ssim=r.ssim,
                                   psnr_per_image=r.psnr_per_image, adherence=r.adherence,
                                   description=descriptions.get(base, "")))

    # main setting: every variant and peer at the run's schedule (+ the longer interval)
    methods: dict[str, Any] = {"full": None, **{name: {"bundle": path} for name, path in bundles.items()}, **peers(policy)}
    for tap in compare_taps:
        if tap != run.config.tap:
            methods.update(peers(policy, tap=tap))
    intervals: dict[str, int] = {}
    anywhere = bundles.get("lesa", "")
    if anywhere and (extra_interval or steps_sweep):
        # another N or step count needs a predictor not bound to the run's own full steps (a kept floor candidate)
        lesa_run = next((v.config(run) for v in variants if v.name == "lesa"), run)
        anywhere = str(any_schedule_bundle(pipe, lesa_run, Path(anywhere), prompts, runner=runner,
                                           out=out / "bundles" / "lesa-any-schedule", data_dir=data,
                                           checkpoint_dir=out / "checkpoints" / "lesa", show_progress=show_progress))
    if extra_interval:
        longer = {**policy, "interval": extra_interval}
        methods[f"lesa@N{extra_interval}"] = {"bundle": anywhere, "policy": longer}
        methods.update(peers(longer, f"@N{extra_interval}", orders=(0, 1)))
        intervals = {n: extra_interval for n in methods if n.endswith(f"@N{extra_interval}")}
    log(f"evaluating {len(methods)} methods at {steps} steps on {len(held_out)} prompts")
    results = evaluate(pipe, methods, held_out, seeds, num_steps=steps, call_kwargs=call, source=source,
                       show_progress=show_progress, reference_tap=run.config.tap)
    main = [r for r in results if r.name in methods and "@" not in r.name]
    record(f"{steps} steps, N = {interval}: the ablation", main, steps, {})
    if extra_interval:
        # the Taylor peers at the run's N beside them: does fewer full passes still beat them?
        taylors = [r for r in main if r.name.startswith("taylor")]
        longer_rows = [results[0], *[r for r in results if r.name.endswith(f"@N{extra_interval}")], *taylors]
        record(f"{steps} steps, N = {extra_interval} (fewer full passes)", longer_rows, steps, intervals)
    save_step_error_plot(out / "error_per_step.png", [r for r in results if r.name in ("full", "lesa", "reuse",
                                                                                        "taylor1", "taylor2")],
                         None, run.router.params.get("boundaries", ()))

    # other step counts: the predictor trained at `steps` against the peers at the same schedule
    if steps_sweep and run.predictor.params.get("time_encoding") == "schedule":
        log("skipping the step-count sweep: the 'schedule' time encoding is bound to the training step count")
        steps_sweep = ()
    for other_steps in steps_sweep:
        if other_steps == steps:
            continue
        sweep = {"full": None, "lesa": {"bundle": anywhere}, **peers(policy)}
        log(f"evaluating at {other_steps} steps")
        results = evaluate(pipe, sweep, held_out, seeds, num_steps=other_steps, call_kwargs=call, source=source,
                           show_progress=show_progress, reference_tap=run.config.tap)
        record(f"{other_steps} steps, N = {interval} (predictor trained at {steps} steps)", results, other_steps, {})

    report.seconds = time.perf_counter() - started
    (out / "quality.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / "quality.md").write_text(report.markdown())
    return report
