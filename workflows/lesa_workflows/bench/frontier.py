"""The quality–speed frontier (``lesa bench --frontier``): PSNR against full-pass equivalents and against
wall-clock speed-up, for budgets of B full passes, LESA's variants beside every peer.

One run on a model source:

1. trains the run's learned predictor once (LESA's fixed schedule; :func:`lesa_core.trainer.train`) on
   the source's training prompts;
2. for each budget B fits, on the collected (training) trajectories (16 rows), the ``learned`` schedule of B
   passes (dynamic programming or the even schedule, whichever is better, then two rounds of moves)
   and the ``adaptive`` policy's threshold for a cap of B (:mod:`lesa_schedulers.policies`) — for the run's
   predictor, which is not retrained per budget (``lesa-alternating`` and ``lesa-ts-sched`` train one per
   budget);
3. tunes each peer to B: the fixed-schedule methods by their interval, the threshold caches by a sweep of
   their threshold on one calibration prompt (a training prompt), taking the threshold whose full-pass
   equivalents come closest to B;
4. samples the held-out prompts with every method of every budget and full compute, interleaved batch by
   batch (:func:`lesa_workflows.evaluate.evaluate`), and writes ``frontier.json``, ``frontier.md`` and
   ``frontier.png``.

Methods per budget (``FAMILIES``):

``lesa``            the trained predictor, LESA's fixed schedule (interval N, warm-up E, forced step E) of B passes
                    (the trained family's weights, also where the run's floor kept a candidate fitted to the
                    run's own full steps: :func:`~lesa_workflows.bench.any_schedule.any_schedule_bundle`)
``lesa-learned``    the same predictor, the ``learned`` schedule fitted for B
``lesa-alternating``   ``lesa-learned`` alternated once with training (:func:`~lesa_workflows.bench.alternating.train_alternating`): a predictor
                    trained **for** ``lesa-learned``'s steps of B on the same collection, then those steps refitted
                    for it (one bundle per budget, holding both) — kept only where it beats ``lesa-learned`` on the
                    validation slice, else ``lesa-learned`` itself
``lesa-adaptive``   the same predictor, the ``adaptive`` policy (fitted threshold, cap B)
``lesa-ts-sched``   a predictor trained **for** diffusers' TaylorSeer schedule of B passes (the ``interval``
                    policy with warm-up E, no forced step, phase E + 1: s < E or (s − E − 1) % N == 0), one
                    bundle per budget on the same collection: LESA against TaylorSeer on the very same full
                    steps (the costliest family: one training per budget)
``lesa-probe``      the ``probe`` predictor (Taylor + a closed-form map of the first k blocks' drift; its own
                    collection, with probes, and closed-form fit), LESA's fixed schedule of B passes; every
                    forecast step also runs k of the body's blocks, so its FPE is B + (S − B)·k / blocks
``lesa-probe-learned``   the ``probe`` predictor on ``lesa-learned``'s schedule for B (fitted for the run's
                    predictor: the teacher-forced schedule error does not see the probe)
``reuse`` / ``taylor1`` / ``taylor2``   FORA and TaylorSeer orders 1, 2 (this framework's ``taylor``), LESA's fixed schedule
``diffusers-taylorseer``   diffusers' ``TaylorSeerCacheConfig`` in lite mode (whole blocks skipped), its
                    interval and warm-up chosen for B passes
``diffusers-fbcache``      diffusers' ``FirstBlockCacheConfig`` (threshold swept; its first block always runs)
``diffusers-magcache``     diffusers' ``MagCacheConfig`` (magnitude ratios calibrated on the calibration prompt;
                    retention 3 steps, no cap on consecutive skips; threshold swept)

Cost is measured, not assumed: full-pass equivalents are counted on the body blocks
(:class:`~lesa_workflows.evaluate.BlockCounter`), so FirstBlockCache's always-computed first block and a
threshold cache's real number of passes are what the table shows. The wall clock is the whole sampling
loop (decode included), timed interleaved, on one thread where the machine is set so. Δ are paired
per-image PSNR differences (mean ± standard error over the prompts).

The probe variants spend more than B full-pass equivalents, so they are left out of the per-budget
comparison and compared **net of their cost** instead (:meth:`FrontierReport.probe_net_of_cost`): each
probe row against the best non-probe LESA row and the best peer at the smallest budget whose FPE is at least
the probe row's (the probe never gets more compute than what it is compared with).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lesa_core.interfaces.model import ModelSource
from lesa_core.metrics import paired_difference as paired
from lesa_core.outputs import claim_output_folder
from lesa_core.run import ResolvedRun
from lesa_core.sources import held_out_samples, training_prompts

__all__ = [
    "DEFAULT_BUDGETS",
    "FAMILIES",
    "PROBE_FAMILIES",
    "FrontierReport",
    "FrontierRow",
    "diffusers_taylorseer_for_budget",
    "interval_for_budget",
    "learned_policy",
    "run_frontier_bench",
]

DEFAULT_BUDGETS = (6, 8, 10, 12, 14, 16)
PROBE_FAMILIES = ("lesa-probe", "lesa-probe-learned")
LESA_FAMILIES = ("lesa", "lesa-learned", "lesa-alternating", "lesa-adaptive", "lesa-ts-sched")
PEER_FAMILIES = (
    "reuse",
    "taylor1",
    "taylor2",
    "diffusers-taylorseer",
    "diffusers-fbcache",
    "diffusers-magcache",
)
FAMILIES = LESA_FAMILIES + PROBE_FAMILIES + PEER_FAMILIES


def interval_for_budget(steps: int, budget: int) -> dict[str, Any] | None:
    """LESA's fixed schedule (warm-up E, forced step E, one full step every N) with exactly ``budget`` full
    passes of ``steps``: E = 3 when some N gives B, else the E nearest 3 that does; ``None`` if none."""
    from lesa_schedulers.policies.interval import IntervalConfig, IntervalPolicy

    for warmup in (3, 2, 4, 1, 5, 6):
        for n in range(1, steps + 1):
            config = IntervalConfig(interval=n, warmup=warmup, force_full=(warmup,))
            if IntervalPolicy(config).num_full_passes(steps) == budget:
                return {"name": "interval", "interval": n, "warmup": warmup, "force_full": [warmup]}
    return None


def learned_policy(error: Any, budget: int) -> dict[str, Any]:
    """The ``learned`` policy config of ``budget`` full passes that minimises ``error`` (the predictor's
    teacher-forced :class:`~lesa_core.trainer.schedule_error.TeacherForcedScheduleError` on training
    trajectories): ``lesa-learned``'s search, dynamic programming and the even schedule as starts, two rounds
    of moves."""
    from lesa_schedulers.policies.learned import search_schedule

    steps = search_schedule(error, budget, starts=("dp", "even"), max_rounds=2)
    return {"name": "learned", "budget": budget, "steps": steps, "num_steps": error.num_steps,
            "times": [error.flow_times[s] for s in steps]}


def diffusers_taylorseer_for_budget(steps: int, budget: int) -> tuple[int, int] | None:
    """``(cache_interval, disable_cache_before_step)`` of diffusers' TaylorSeer with ``budget`` computed steps:
    it computes s < E and (s − E − 1) % N == 0 (E = 3 preferred)."""
    for warmup in (3, 2, 4, 1, 5, 6):
        for n in range(1, steps + 1):
            full = sum(s < warmup or (s - warmup - 1) % n == 0 for s in range(steps))
            if full == budget:
                return n, warmup
    return None


class DiffusersCache:
    """A diffusers cache (``enable_cache`` / ``disable_cache``) as an
    :class:`~lesa_workflows.evaluate.ExternalMethod`; a fresh config (fresh state) per batch."""

    def __init__(self, make_config: Callable[[], Any], description: str) -> None:
        self.make_config = make_config
        self.description = description

    def attach(self, transformer: Any) -> Callable[[], None]:
        with _quiet_logger("diffusers"):
            transformer.enable_cache(self.make_config())
        return transformer.disable_cache  # type: ignore[no-any-return]


@contextlib.contextmanager
def _quiet_logger(name: str) -> Any:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class FrontierRow:
    """One method at one budget."""

    family: str
    budget: int
    name: str
    full_passes: float
    full_pass_equivalents: float | None
    psnr: float
    ssim: float
    seconds: float
    speedup: float
    psnr_per_image: list[float]
    setting: str = ""


@dataclass
class FrontierReport:
    """Everything one frontier benchmark measured."""

    model: str
    steps: int
    budgets: list[int]
    prompts: list[str]
    seeds: list[int]
    train_prompts: int
    machine: str
    rows: list[FrontierRow] = field(default_factory=list)
    full_seconds: float = 0.0
    seconds: float = 0.0
    fits: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "comparisons": self.comparisons()}

    def at(self, family: str, budget: int) -> FrontierRow | None:
        return next((r for r in self.rows if r.family == family and r.budget == budget), None)

    def best(self, families: Sequence[str], budget: int) -> FrontierRow | None:
        """The row of ``families`` at ``budget`` with the highest mean PSNR."""
        rows = [r for f in families if (r := self.at(f, budget)) is not None]
        return max(rows, key=lambda r: r.psnr, default=None)

    def comparisons(self) -> dict[str, Any]:
        """Per budget: the best LESA variant against every peer (paired Δ), and the Must-show checks."""
        out: dict[str, Any] = {"per_budget": {}, "lesa_above_every_peer_at_every_budget": True}
        for budget in self.budgets:
            best = self.best(LESA_FAMILIES, budget)
            if best is None:
                continue
            deltas = {}
            for family in PEER_FAMILIES:
                peer = self.at(family, budget)
                if peer is None:
                    continue
                mean, se = paired(best.psnr_per_image, peer.psnr_per_image)
                deltas[family] = {
                    "delta": mean,
                    "se": se,
                    "peer_psnr": peer.psnr,
                    "peer_full_pass_equivalents": peer.full_pass_equivalents,
                }
                if not mean > 0:
                    out["lesa_above_every_peer_at_every_budget"] = False
            out["per_budget"][budget] = {"best_lesa": best.family, "psnr": best.psnr, "vs_peers": deltas}
        lesa8, peer10 = self.best(LESA_FAMILIES, 8), self.best(PEER_FAMILIES, 10)
        if lesa8 is not None and peer10 is not None:
            mean, se = paired(lesa8.psnr_per_image, peer10.psnr_per_image)
            out["lesa_at_8_vs_best_peer_at_10"] = {
                "lesa": lesa8.family,
                "peer": peer10.family,
                "delta": mean,
                "se": se,
            }
        out["probe_net_of_cost"] = self.probe_net_of_cost()
        return out

    def _fpe(self, row: FrontierRow) -> float:
        return row.full_pass_equivalents if row.full_pass_equivalents is not None else row.full_passes

    def probe_net_of_cost(self) -> list[dict[str, Any]]:
        """Each probe row against the best non-probe LESA row and the best peer at the smallest budget B' whose
        rows' FPE is at least the probe row's (paired Δ): the probe's gain net of its cost. A probe row with
        more FPE than every budget measured is compared with nothing."""
        out = []
        for row in self.rows:
            if row.family not in PROBE_FAMILIES:
                continue
            fpe = self._fpe(row)
            entry: dict[str, Any] = {
                "name": row.name,
                "family": row.family,
                "budget": row.budget,
                "full_pass_equivalents": fpe,
                "psnr": row.psnr,
            }
            for label, families in (("lesa", LESA_FAMILIES), ("peer", PEER_FAMILIES)):
                for budget in sorted(self.budgets):
                    other = self.best(families, budget)
                    if other is None or self._fpe(other) < fpe - 1e-9:
                        continue
                    mean, se = paired(row.psnr_per_image, other.psnr_per_image)
                    entry[label] = {
                        "name": other.name,
                        "full_pass_equivalents": self._fpe(other),
                        "psnr": other.psnr,
                        "delta": mean,
                        "se": se,
                    }
                    break
            out.append(entry)
        return out

    def markdown(self) -> str:
        lines = [
            f"# Quality–speed frontier on the '{self.model}' model",
            "",
            f"{len(self.prompts)} held-out prompts (seeds {self.seeds[0]}…{self.seeds[-1]}), {self.steps} steps; "
            f"predictor trained on {self.train_prompts} prompts; machine: {self.machine}. PSNR against the same "
            "model's full-compute image. FPE = full-pass equivalents per trajectory (body blocks counted). "
            "Speed-up = full compute's wall clock / the method's (whole sampling loop, timed interleaved). "
            f"Full compute: {self.full_seconds:.1f} s for all prompts.",
            "",
            "| B | " + " | ".join(FAMILIES) + " |",
            "|---|" + "---|" * len(FAMILIES),
        ]
        for budget in self.budgets:
            cells = []
            for family in FAMILIES:
                r = self.at(family, budget)
                fpe = r.full_pass_equivalents if r is not None else None
                cells.append(
                    "—"
                    if r is None
                    else f"{r.psnr:.2f} ({fpe if fpe is None else f'{fpe:.1f}'}, {r.speedup:.2f}×)"
                )
            lines.append(f"| {budget} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Cells: PSNR dB (FPE, wall-clock speed-up).",
            "",
            "## Best LESA variant against each peer, per budget (Δ dB ± s.e., paired)",
            "",
            "| B | best lesa | PSNR | " + " | ".join(PEER_FAMILIES) + " |",
            "|---|---|---|" + "---|" * len(PEER_FAMILIES),
        ]
        comparisons = self.comparisons()
        for budget, c in comparisons["per_budget"].items():
            cells = [
                f"{c['vs_peers'][f]['delta']:+.2f} ± {c['vs_peers'][f]['se']:.2f}"
                if f in c["vs_peers"]
                else "—"
                for f in PEER_FAMILIES
            ]
            lines.append(f"| {budget} | {c['best_lesa']} | {c['psnr']:.2f} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"- Best LESA variant above every peer at every budget: "
            f"**{'yes' if comparisons['lesa_above_every_peer_at_every_budget'] else 'no'}** (mean Δ > 0).",
        ]
        check = comparisons.get("lesa_at_8_vs_best_peer_at_10")
        if check is not None:
            lines.append(
                f"- Best LESA variant at 8 ({check['lesa']}) against the best peer at 10 ({check['peer']}): "
                f"{check['delta']:+.2f} ± {check['se']:.2f} dB."
            )
        probe = comparisons["probe_net_of_cost"]
        if probe:
            lines += [
                "",
                "## Probe variants net of their cost (against rows with at least their FPE; Δ dB ± s.e., paired)",
                "",
                "| probe row | FPE | PSNR | best non-probe lesa (FPE) | Δ | best peer (FPE) | Δ |",
                "|---|---|---|---|---|---|---|",
            ]
            for p in probe:
                cells = []
                for label in ("lesa", "peer"):
                    other = p.get(label)
                    cells += (
                        ["—", "—"]
                        if other is None
                        else [
                            f"{other['name']} ({other['full_pass_equivalents']:.1f})",
                            f"{other['delta']:+.2f} ± {other['se']:.2f}",
                        ]
                    )
                lines.append(
                    f"| {p['name']} | {p['full_pass_equivalents']:.1f} | {p['psnr']:.2f} | "
                    + " | ".join(cells)
                    + " |"
                )
        settings = [f"- {r.name}: {r.setting}" for r in self.rows if r.setting]
        if settings:
            lines += ["", "## Settings", "", *settings]
        lines += ["", f"Whole benchmark: {self.seconds:.0f} s.", ""]
        return "\n".join(lines)


def _single_fpe(
    pipe: Any,
    runner: Any,
    blocks: Sequence[Any],
    method: Any,
    prompt: str,
    seed: int,
    steps: int,
    full_calls: int,
) -> float:
    """Full-pass equivalents of ``method`` (an external method) on one trajectory of ``prompt``."""
    from lesa_core.assembly import find_transformer
    from lesa_workflows.evaluate import BlockCounter

    transformer = find_transformer(pipe)
    counter = BlockCounter(blocks)
    detach = method.attach(transformer)
    try:
        runner.run([prompt], [seed], steps)
    finally:
        detach()
        counter.remove()
    return steps * counter.calls / full_calls


def _full_calls(pipe: Any, runner: Any, blocks: Sequence[Any], prompt: str, seed: int, steps: int) -> int:
    from lesa_workflows.evaluate import BlockCounter

    counter = BlockCounter(blocks)
    try:
        runner.run([prompt], [seed], steps)
    finally:
        counter.remove()
    return counter.calls


def _mag_ratios(pipe: Any, runner: Any, prompt: str, seed: int, steps: int) -> list[float]:
    """MagCache's magnitude ratios of this model, calibrated on one trajectory (diffusers' calibrate mode;
    the cond context's ratios)."""
    from diffusers import MagCacheConfig

    from lesa_core.assembly import find_transformer

    captured: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    logger = logging.getLogger("diffusers.hooks.mag_cache")
    handler, level, propagate = _Capture(logging.INFO), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # keep the calibration's messages off the console
    transformer = find_transformer(pipe)
    try:
        transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=steps))
        with contextlib.redirect_stdout(io.StringIO()):  # calibration prints its result
            runner.run([prompt], [seed], steps)
    finally:
        transformer.disable_cache()
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    results = [m for m in captured if "Calibration Results" in m]
    if not results:
        raise RuntimeError("MagCache calibration logged no ratios")
    return [float(x) for x in results[0].split(":", 1)[1].strip(" []").split(",")]


def _threshold_sweep(
    make: Callable[[float], DiffusersCache],
    thresholds: Sequence[float],
    measure: Callable[[Any], float],
    budgets: Sequence[int],
) -> dict[int, tuple[float, float]]:
    """For each budget, the threshold whose measured full-pass equivalents come closest to it (ties: the
    smaller FPE), with that FPE."""
    measured = [(measure(make(t)), t) for t in thresholds]
    return {
        b: min(((fpe, t) for fpe, t in measured), key=lambda ft: (abs(ft[0] - b), ft[0]))[::-1]
        for b in budgets
    }


def run_frontier_bench(
    source: ModelSource,
    run: ResolvedRun,
    *,
    out: str | Path,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    eval_prompts: int = 16,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    families: Sequence[str] = FAMILIES,
    batch_size: int = 8,
    model_name: str = "model",
    machine: str = "",
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> FrontierReport:
    """Run the frontier benchmark (module docstring); write ``frontier.json``, ``frontier.md``, ``frontier.png``."""
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    from lesa_core.assembly import assemble, find_transformer
    from lesa_core.errors import ConfigError
    from lesa_core.trainer import PipelineRunner, TrajectoryStore, train
    from lesa_core.trainer.policy_fit import FIT_ROWS
    from lesa_core.trainer.schedule_error import TeacherForcedScheduleError
    from lesa_schedulers.policies.adaptive import AdaptiveConfig, AdaptivePolicy
    from lesa_workflows.bench.alternating import train_alternating
    from lesa_workflows.bench.any_schedule import any_schedule_bundle
    from lesa_workflows.evaluate import evaluate

    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ConfigError(
            f"unknown frontier method(s) {', '.join(unknown)}; choose from {', '.join(FAMILIES)}"
        )
    started = time.perf_counter()
    out = claim_output_folder(out, command="lesa bench --frontier", markers=("frontier.json",))
    data = Path(data_dir) if data_dir else out / "data"
    steps = run.config.training.num_steps
    pipe = source.load(device)
    call = source.call_defaults()
    runner = PipelineRunner(pipe, **call)
    prompts = training_prompts(run.config.training, source)
    held_out, seeds = held_out_samples(source, eval_prompts)
    report = FrontierReport(
        model=model_name,
        steps=steps,
        budgets=list(budgets),
        prompts=held_out,
        seeds=seeds,
        train_prompts=len(prompts),
        machine=machine,
    )

    log(f"training the run's predictor on {len(prompts)} prompts")
    bundle, _ = train(
        pipe,
        run,
        prompts,
        runner=runner,
        out=out / "bundle",
        data_dir=data,
        checkpoint_dir=out / "checkpoint",
        show_progress=show_progress,
    )
    # one predictor across budgets and schedules: not a floor candidate bound to the run's own full steps
    bundle = any_schedule_bundle(pipe, run, bundle, prompts, runner=runner, out=out / "bundle-any-schedule",
                                 data_dir=data, checkpoint_dir=out / "checkpoint", show_progress=show_progress)
    probe_bundle = None
    if any(f in families for f in PROBE_FAMILIES):
        log(f"training the probe predictor (closed form) on {len(prompts)} prompts, collected with probes")
        probe_bundle, _ = train(
            pipe,
            probe_variant(run),
            prompts,
            runner=runner,
            out=out / "bundle-probe",
            data_dir=data.with_name(data.name + "-probe"),
            checkpoint_dir=out / "checkpoint-probe",
            show_progress=show_progress,
        )
    assembly = assemble(find_transformer(pipe), {"bundle": str(bundle)})
    predictor = assembly.predictor
    blocks = list(assembly.adapter.body_blocks())  # type: ignore[attr-defined]
    store = TrajectoryStore(data / "trajectories")
    meta = store.read_meta()
    assert meta is not None and meta.schedule is not None
    error = TeacherForcedScheduleError(predictor, store.load(), meta.schedule, max_rows=FIT_ROWS)

    methods: dict[str, Any] = {"full": None}
    settings: dict[str, tuple[str, int, str]] = {}  # name -> (family, budget, setting)

    def add(family: str, budget: int, method: Any, setting: str) -> None:
        if family in families:
            name = f"{family}@{budget}"
            methods[name] = method
            settings[name] = (family, budget, setting)

    calibration_prompt, calibration_seed = prompts[0], 20_000
    full_calls = _full_calls(pipe, runner, blocks, calibration_prompt, calibration_seed, steps)

    def measure(method: Any) -> float:
        return _single_fpe(
            pipe, runner, blocks, method, calibration_prompt, calibration_seed, steps, full_calls
        )

    sweeps: dict[str, dict[int, tuple[float, float]]] = {}
    if "diffusers-fbcache" in families:
        log("sweeping FirstBlockCache's threshold on the calibration prompt")
        sweeps["diffusers-fbcache"] = _threshold_sweep(
            lambda t: DiffusersCache(lambda: FirstBlockCacheConfig(threshold=t), ""),
            [10 ** (-3 + i * 0.2) for i in range(16)],
            measure,
            budgets,
        )
    mag_ratios: list[float] | None = None
    if "diffusers-magcache" in families:
        log("calibrating MagCache's magnitude ratios and sweeping its threshold")
        mag_ratios = _mag_ratios(pipe, runner, calibration_prompt, calibration_seed, steps)
        ratios = mag_ratios

        def magcache(t: float) -> DiffusersCache:
            return DiffusersCache(
                lambda: MagCacheConfig(
                    threshold=t,
                    max_skip_steps=steps,
                    retention_ratio=3 / steps,
                    num_inference_steps=steps,
                    mag_ratios=list(ratios),
                ),
                "",
            )

        sweeps["diffusers-magcache"] = _threshold_sweep(
            magcache, [10 ** (-3 + i * 0.25) for i in range(18)], measure, budgets
        )
    report.fits["mag_ratios"] = mag_ratios
    report.fits["threshold_sweeps"] = {
        k: {str(b): {"threshold": t, "calibration_fpe": f} for b, (t, f) in v.items()}
        for k, v in sweeps.items()
    }

    log(f"fitting the learned schedules and adaptive thresholds for budgets {list(budgets)}")
    for budget in budgets:
        fixed = interval_for_budget(steps, budget)
        if fixed is not None:
            setting = f"interval N = {fixed['interval']}, E = {fixed['warmup']}, forced {fixed['force_full']}"
            add("lesa", budget, {"bundle": str(bundle), "policy": fixed}, setting)
            if probe_bundle is not None:
                add("lesa-probe", budget, {"bundle": str(probe_bundle), "policy": fixed}, setting)
            for order, family in enumerate(("reuse", "taylor1", "taylor2")):
                add(
                    family,
                    budget,
                    {
                        "tap": run.config.tap,
                        "router": run.router.as_dict(),
                        "policy": fixed,
                        "predictor": {"name": "taylor", "order": order},
                    },
                    setting,
                )
        if {"lesa-learned", "lesa-probe-learned", "lesa-alternating"} & set(families):
            learned = learned_policy(error, budget)
            full = learned["steps"]
            add("lesa-learned", budget, {"bundle": str(bundle), "policy": learned}, f"steps {full}")
            if "lesa-alternating" in families:
                log(f"training a predictor for lesa-learned's schedule of {budget} passes, then refitting it")
                alternation = train_alternating(
                    pipe, run, bundle, learned, prompts, runner=runner, out=out / f"bundle-alternating-{budget}",
                    data_dir=data, checkpoint_dir=out / f"checkpoint-alternating-{budget}",
                    show_progress=show_progress)
                add("lesa-alternating", budget, alternation.method, alternation.describe())
            if probe_bundle is not None:
                add(
                    "lesa-probe-learned",
                    budget,
                    {"bundle": str(probe_bundle), "policy": learned},
                    f"steps {full} (lesa-learned's)",
                )
        if "lesa-adaptive" in families:
            params = AdaptivePolicy(AdaptiveConfig(budget=budget)).fit(error)
            assert params is not None
            add(
                "lesa-adaptive",
                budget,
                {"bundle": str(bundle), "policy": {"name": "adaptive", **params}},
                f"threshold {params['threshold']:.4g}, max_gap {params['max_gap']}, cap {budget}, warm-up {params['warmup']}",
            )
        ts = diffusers_taylorseer_for_budget(steps, budget)
        if ts is not None:
            n, e = ts
            if "lesa-ts-sched" in families:
                ts_policy = {"name": "interval", "interval": n, "warmup": e, "force_full": [], "phase": e + 1}
                log(f"training a predictor for TaylorSeer's schedule of {budget} passes (N = {n}, E = {e})")
                ts_bundle, _ = train(
                    pipe,
                    run.derive(policy=ts_policy),
                    prompts,
                    runner=runner,
                    out=out / f"bundle-ts-sched-{budget}",
                    data_dir=data,
                    checkpoint_dir=out / f"checkpoint-ts-sched-{budget}",
                    show_progress=show_progress,
                )
                add("lesa-ts-sched", budget, {"bundle": str(ts_bundle)},
                    f"trained for interval N = {n}, E = {e}, phase {e + 1}, no forced step (TaylorSeer's full steps)")
            add(
                "diffusers-taylorseer",
                budget,
                DiffusersCache(
                    lambda n=n, e=e: TaylorSeerCacheConfig(
                        cache_interval=n, disable_cache_before_step=e, use_lite_mode=True
                    ),
                    "",
                ),
                f"TaylorSeerCacheConfig(cache_interval={n}, disable_cache_before_step={e}, use_lite_mode=True)",
            )
        if "diffusers-fbcache" in sweeps:
            t, f = sweeps["diffusers-fbcache"][budget]
            add(
                "diffusers-fbcache",
                budget,
                DiffusersCache(lambda t=t: FirstBlockCacheConfig(threshold=t), ""),
                f"FirstBlockCacheConfig(threshold={t:.4g}) (calibration FPE {f:.1f})",
            )
        if "diffusers-magcache" in sweeps and mag_ratios is not None:
            t, f = sweeps["diffusers-magcache"][budget]
            add(
                "diffusers-magcache",
                budget,
                magcache(t),
                f"MagCacheConfig(threshold={t:.4g}, max_skip_steps={steps}, retention 3 steps) "
                f"(calibration FPE {f:.1f})",
            )
    report.fits["schedule_error_forecasts"] = error.forecasts_made

    log(f"evaluating {len(methods)} methods at {steps} steps on {len(held_out)} prompts")
    results = evaluate(
        pipe,
        methods,
        held_out,
        seeds,
        num_steps=steps,
        call_kwargs=call,
        source=None,
        batch_size=batch_size,
        show_progress=show_progress,
        reference_tap=run.config.tap,
    )
    report.full_seconds = results[0].seconds
    for r in results[1:]:
        family, budget, setting = settings[r.name]
        report.rows.append(
            FrontierRow(
                family=family,
                budget=budget,
                name=r.name,
                full_passes=r.full_passes,
                full_pass_equivalents=r.full_pass_equivalents,
                psnr=r.psnr,
                ssim=r.ssim,
                seconds=r.seconds,
                speedup=r.speedup,
                psnr_per_image=r.psnr_per_image,
                setting=setting,
            )
        )
    report.seconds = time.perf_counter() - started
    (out / "frontier.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / "frontier.md").write_text(report.markdown())
    save_frontier_plot(out / "frontier.png", report)
    return report


def probe_variant(run: ResolvedRun, **params: Any) -> dict[str, Any]:
    """The run's config with the ``probe`` predictor (its default parameters, updated by ``params``): the same
    tap, router, training settings and prompts."""
    config = run.config.model_dump(mode="json", exclude_none=True)
    config["predictor"] = {"name": "probe", **params}
    config.pop("bundle", None)
    return config


def save_frontier_plot(path: Path, report: FrontierReport) -> None:
    """PSNR against full-pass equivalents (left) and against wall-clock speed-up (right), a line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for family in FAMILIES:
        rows = sorted((r for r in report.rows if r.family == family), key=lambda r: r.budget)
        if not rows:
            continue
        style = "-o" if family.startswith("lesa") else "--."
        axes[0].plot(
            [r.full_pass_equivalents or r.full_passes for r in rows],
            [min(r.psnr, 60) for r in rows],
            style,
            label=family,
        )
        axes[1].plot([r.speedup for r in rows], [min(r.psnr, 60) for r in rows], style, label=family)
    axes[0].set_xlabel(f"full-pass equivalents (of {report.steps})")
    axes[1].set_xlabel("wall-clock speed-up over full compute")
    for ax in axes:
        ax.set_ylabel("PSNR dB vs full compute")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Quality–speed frontier, '{report.model}', {len(report.prompts)} held-out prompts")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
