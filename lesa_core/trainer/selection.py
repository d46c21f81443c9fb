"""Selection by what users see: a validation slice scored in closed loop, the best start, the best epoch.

The last prompts of the collection (``training.validation_prompts``, at most a quarter of them) are
never trained on. :class:`ClosedLoopValidator` samples them with a predictor attached — the run's
policy, router and tap, exactly as a user would — and scores the output against the full-compute one,
averaged over the prompts: with a pipeline runner the decoded images by uint8 PSNR (what the benchmarks
report), with any other runner its output (latents) by SNR in dB, ``10·log10(‖x‖² / ‖x̂ − x‖²)``. Image
space matters: on the embedded model's validation slice the latent SNR ranks Taylor-1 above reuse, while
image PSNR ranks reuse above Taylor-1 (docs/results.md). Every scoring samples the same batches, so the
full steps before the first forecast — the warm-up, shared by every candidate — are computed by the first
scoring and handed back to the others bit for bit (:class:`~lesa_core.replay.FullStepReplay`).

* **Floor** (:func:`score_floor`, :func:`apply_floor`): every forecaster of ``training.start`` (reuse,
  Taylor-1, Taylor-2 and the closed-form ``linear`` fit by default) is built for the run, fitted in closed
  form on the training slice if it can be (:class:`~lesa_core.interfaces.ClosedFormFit`), and scored.
  Training starts from the family's own initialisation; if the kept weights then score below the best
  candidate, a learned family that can start from coefficients
  (:class:`~lesa_core.interfaces.CoefficientStart`) is set to reproduce that candidate's coefficients, and
  kept if that scores better. (Starting training *from* the best candidate, :func:`choose_start`, trailed
  this by 1.5 dB at N = 7 and 4 dB at N = 10 on the embedded model: docs/results.md.)
* **Best epoch** (:class:`BestKeeper`): the start and every epoch of both stages are scored; the best
  weights are restored at the end, so the trainer never returns a predictor worse on the validation
  slice than its start, nor (up to the family's reproduction of its coefficients) than the best floor
  candidate.

The core names no family: candidates are plugin specs from the config, resolved through the host.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lesa_core import distributed
from lesa_core.assembly import Assembly, Binding
from lesa_core.composite import StageAwarePredictor
from lesa_core.config import PluginSpec
from lesa_core.errors import ConfigError, LesaError, TrainingError
from lesa_core.interfaces import (
    ClosedFormFit,
    CoefficientStart,
    CoefficientTarget,
    Decision,
    Example,
    ForecastInput,
    LinearPredictor,
    Predictor,
    RuntimeComponents,
)
from lesa_core.metrics import psnr
from lesa_core.plugins import PluginHost
from lesa_core.replay import EVALUATION_REPLAY_BYTES, FullStepReplay
from lesa_core.trainer.losses import TeacherForcing
from lesa_core.trainer.runner import TrajectoryRunner, sample_scored, scoring_space
from lesa_core.trainer.store import StoreMeta
from lesa_core.trainer.sync import gradient_sync

if TYPE_CHECKING:
    from lesa_core.run import ResolvedRun

logger = logging.getLogger("lesa")


def validation_count(num_prompts: int, requested: int) -> int:
    """How many of the collection's last prompts form the validation slice: ``requested``, at most a quarter
    of ``num_prompts`` (so that training keeps three quarters)."""
    return max(0, min(requested, num_prompts // 4))


def validation_rows(num_prompts: int, requested: int) -> list[int]:
    """The indices of the validation slice: the last :func:`validation_count` prompts of the collection."""
    return list(range(num_prompts - validation_count(num_prompts, requested), num_prompts))


def training_slice(
    meta: StoreMeta,
    taps: dict[str, Tensor],
    num_validation: int,
) -> tuple[StoreMeta, dict[str, Tensor]]:
    """The store without its last ``num_validation`` prompts (prompt i keeps seed ``seed + i``)."""
    if num_validation == 0:
        return meta, taps
    keep = len(meta.prompts) - num_validation
    return (
        dataclasses.replace(meta, prompts=list(meta.prompts[:keep])),
        {context: truth[:keep] for context, truth in taps.items()},
    )


def snr_db(sample: Tensor, reference: Tensor) -> Tensor:
    """Per-sample ``10·log10(‖reference‖² / ‖sample − reference‖²)`` (capped at 200 dB for exact matches)."""
    error = (sample - reference).flatten(1).pow(2).sum(1)
    power = reference.flatten(1).pow(2).sum(1)
    return (10 * torch.log10(power.clamp_min(1e-30) / error.clamp_min(1e-30))).clamp_max(200.0)


class ClosedLoopValidator:
    """Scores a predictor by sampling the validation prompts with it attached (see the module docstring).

    :param assembly: the run (adapter, policy, router, tap).
    :param runner: samples the prompts. :param meta: the full store's metadata (prompts and seeds).
    :param rows: the validation prompts' indices in ``meta.prompts``.
    :param references: the validation prompts' full-compute outputs as collection kept them
        (:meth:`~lesa_core.trainer.store.TrajectoryStore.load_outputs`, in the order of ``rows``), or ``None``
        to sample them (once, when first needed).
    :param replay: the warm-up steps already recorded for this model, slice and runner (validators of the
        same slice that differ in their policy may share one); ``None``: a replay of this validator's own.
    """

    def __init__(
        self, assembly: Assembly, runner: TrajectoryRunner, meta: StoreMeta, rows: Sequence[int],
        references: Tensor | None = None, replay: FullStepReplay | None = None,
    ) -> None:
        self.assembly = assembly
        self.runner = runner
        self.meta = meta
        self.rows = list(rows)
        # positions in ``rows`` this process samples: its share, split as every global batch is (all in one process)
        self._local = gradient_sync().local_rows(torch.arange(len(self.rows))).tolist()
        if references is not None and references.shape[0] != len(self.rows):
            raise TrainingError(f"{references.shape[0]} reference outputs for {len(self.rows)} validation prompts")
        self._reference: Tensor | None = None if references is None else references[self._local]
        self.seconds = 0.0  # wall time spent sampling (scores and the reference), for the report
        # every scoring samples the same batches: the full steps before the first forecast are computed once
        self.replay = replay if replay is not None else FullStepReplay(max_bytes=EVALUATION_REPLAY_BYTES)

    @property
    def space(self) -> str:
        """``image`` when the runner drives a pipeline (decoded images, scored by uint8 PSNR: what the
        benchmarks report), else ``latent`` (the runner's output, scored by SNR)."""
        return scoring_space(self.runner)

    def _sample(self) -> Tensor:
        """This process's validation prompts sampled in one batch (see :meth:`per_prompt`), as scored: uint8
        images with a pipeline, float32 latents otherwise."""
        rows = [self.rows[i] for i in self._local]
        prompts = [self.meta.prompts[r] for r in rows]
        seeds = [self.meta.seed + r for r in rows]
        start = time.perf_counter()
        with torch.no_grad():
            sample = sample_scored(self.runner, prompts, seeds, self.meta.num_steps)
        self.seconds += time.perf_counter() - start
        assert sample is not None
        return sample

    @property
    def reference(self) -> Tensor:
        """The full-compute outputs of this process's validation prompts: collection's, else sampled once."""
        if self._reference is None:
            self._reference = self._sample()
        return self._reference

    def per_prompt(self, predictor: Predictor) -> Tensor:
        """Each validation prompt's closed-loop score (dB) with ``predictor`` attached, in the order of ``rows``.

        Under a process group of P ranks each rank samples its contiguous share of the prompts (a rank with
        none samples nothing) and the scores are summed over the ranks, so every rank returns the same
        vector and takes the same selection decisions; validation then costs each rank 1/P of the
        single-process time. A share is sampled as one batch, so the scores can differ from a
        single-process run's in their last bits (a batch's floats depend on its batch-mates).
        """
        if not distributed.is_distributed():
            return self._local_scores(predictor)
        scores = torch.zeros(len(self.rows), dtype=torch.float64)
        if self._local:
            scores[self._local] = self._local_scores(predictor).double().cpu()
        return distributed.sum_over_ranks(scores)

    def _local_scores(self, predictor: Predictor) -> Tensor:
        reference = self.reference
        was_training = predictor.training
        predictor.eval()
        components = RuntimeComponents(
            predictor=predictor,
            make_policy=self.assembly.plugins.make_policy,
            router=self.assembly.plugins.router,
            tap=self.assembly.tap,
            guard_non_finite=True,
            replay=self.replay,
        )
        attachment = self.assembly.adapter.attach(components)
        try:
            sample = self._sample()
        finally:
            attachment.remove()
            predictor.train(was_training)
        sample = sample.to(reference.device)
        if sample.shape != reference.shape:
            raise TrainingError(
                f"the validation samples are {tuple(sample.shape)} and the collected full-compute outputs "
                f"{tuple(reference.shape)}: the sampling call differs from the collection's; collect again with "
                "this call (another training.data_dir) or sample with the collection's call arguments")
        if self.space == "image":
            return psnr(reference, sample)
        return snr_db(sample, reference)

    def score(self, predictor: Predictor) -> float:
        """The mean closed-loop score (dB) over the validation prompts (``-inf`` if not finite)."""
        value = float(self.per_prompt(predictor).mean())
        return value if math.isfinite(value) else -math.inf


@dataclass
class BestKeeper:
    """Keeps the best-scoring weights of a predictor seen so far (see the module docstring).

    :ivar scores: every scored point, ``(label, dB)``, in order.
    """

    validator: ClosedLoopValidator
    predictor: Predictor
    scores: list[tuple[str, float]] = field(default_factory=list)
    best_label: str | None = None
    best_score: float = -math.inf
    _state: dict[str, Tensor] | None = None

    def consider(self, label: str) -> float:
        """Score the predictor now; keep its weights if they beat the best so far."""
        score = self.validator.score(self.predictor)
        self.scores.append((label, score))
        logger.info(
            "validation (closed loop, %d prompts, %s): %s %.3f dB",
            len(self.validator.rows),
            self.validator.space,
            label,
            score,
        )
        if self._state is None or score > self.best_score:
            self.best_label, self.best_score = label, score
            self._state = copy.deepcopy(self.predictor.state_dict())
        return score

    def to_state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """What a checkpoint keeps of the selection: the scores (JSON) and the best weights (tensors)."""
        state = {
            "scores": [[label, score] for label, score in self.scores],
            "best": self.best_label,
            "best_score": self.best_score,
        }
        return state, dict(self._state or {})

    def load_state(self, state: dict[str, Any], tensors: dict[str, Tensor]) -> bool:
        """Take up a checkpoint's selection (see :meth:`to_state`); ``False`` if it holds none."""
        if not state.get("scores") or not tensors:
            return False
        self.scores = [(str(label), float(score)) for label, score in state["scores"]]
        self.best_label, self.best_score = state["best"], float(state["best_score"])
        self._state = dict(tensors)
        return True

    def restore(self) -> None:
        """Load the best weights back into the predictor."""
        if self._state is not None:
            self.predictor.load_state_dict(self._state)

    def summary(self) -> dict[str, Any]:
        """What the report and the bundle metadata record: every score, the winner, its gain on the start."""
        start = self.scores[0][1] if self.scores else math.nan
        return {
            "space": self.validator.space,
            "scores": [[label, round(score, 4)] for label, score in self.scores],
            "best": self.best_label,
            "best_db": round(self.best_score, 4),
            "gain_over_start_db": round(self.best_score - start, 4),
        }


# -- teacher-forced examples and coefficient targets -------------------------------------------------------


def forecast_steps(teacher: TeacherForcing) -> list[int]:
    """The steps the policy forecasts and the predictor has history for."""
    return [s for s, d in enumerate(teacher.decisions) if d is Decision.FORECAST and teacher.can_forecast(s)]


def teacher_forced_examples(
    teacher: TeacherForcing,
    taps: dict[str, Tensor],
    batch_rows: int = 16,
    probes: dict[str, Tensor] | None = None,
) -> Iterator[Example]:
    """Every forecast step's teacher-forced examples, every context, in batches of ``batch_rows`` prompts.

    With ``probes`` (context → ``(P, S, N', C_probe)``, a probe collection) each example also carries the
    probe's drift from the newest history entry — the last full pass — to the forecast step, as the runtime
    hands it (:attr:`~lesa_core.interfaces.ForecastInput.probe_drift`).
    """
    probes = probes or {}
    for step in forecast_steps(teacher):
        idx = teacher.history(step)
        for context, truth in taps.items():
            probe = probes.get(context)
            for start in range(0, truth.shape[0], batch_rows):
                rows = truth[start : start + batch_rows]
                inputs = teacher.forecast_input([rows[:, j] for j in idx], idx, step)
                if probe is not None:
                    block = probe[start : start + batch_rows]
                    inputs = dataclasses.replace(inputs, probe_drift=block[:, step] - block[:, idx[-1]])
                yield Example(inputs, rows[:, step])


def fit_closed_form(
    predictor: Predictor,
    decisions: Sequence[Decision],
    times: Tensor,
    taps: dict[str, Tensor],
    probes: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Fit a :class:`~lesa_core.interfaces.ClosedFormFit` family on teacher-forced examples of ``taps`` (with
    the probe drift of ``probes`` when the family reads a probe)."""
    assert isinstance(predictor, ClosedFormFit)
    return predictor.fit_closed_form(
        teacher_forced_examples(
            TeacherForcing(predictor, decisions, times), taps, probes=probes if predictor.uses_probe else None
        )
    )


def can_start_from_coefficients(predictor: Predictor) -> bool:
    """Whether the predictor (every expert of a stage-aware one) can start from coefficients."""
    if isinstance(predictor, StageAwarePredictor):
        return all(isinstance(e, CoefficientStart) for e in predictor.expert_list)
    return isinstance(predictor, CoefficientStart)


def coefficient_targets(candidate: LinearPredictor, learner: TeacherForcing) -> list[CoefficientTarget]:
    """The candidate's coefficients at every forecast step of ``learner``, over the learner's history there
    (entries the candidate does not read weigh zero)."""
    targets = []
    with torch.no_grad():
        for step in forecast_steps(learner):
            idx = learner.history(step)
            n = len(idx)
            inputs = learner.forecast_input([torch.zeros(1)] * n, idx, step)
            k = min(candidate.history_size, n)
            coef, bias = candidate.coefficients(inputs.last(k))
            coef = torch.cat([coef.new_zeros((n - k, *coef.shape[1:])), coef]).float()
            targets.append(CoefficientTarget(inputs, coef, bias.float()))
    return targets


def start_from_targets(predictor: Predictor, targets: Sequence[CoefficientTarget]) -> float:
    """Hand each expert the targets of its stage (trimmed to its history size); the mean remaining error."""
    experts = predictor.expert_list if isinstance(predictor, StageAwarePredictor) else [predictor]
    groups: list[list[CoefficientTarget]] = [[] for _ in experts]
    for target in targets:
        stage = int(predictor.stage_of(target.inputs.t)) if isinstance(predictor, StageAwarePredictor) else 0
        k = min(experts[stage].history_size, len(target.inputs.features))
        groups[stage].append(CoefficientTarget(target.inputs.last(k), target.coef[-k:], target.bias))
    errors = []
    for expert, group in zip(experts, groups, strict=True):
        if group:
            assert isinstance(expert, CoefficientStart)
            errors.append(expert.start_from(group))
    return sum(errors) / max(len(errors), 1)


def label(spec: PluginSpec) -> str:
    """A short name for a start candidate: ``taylor`` order 0/1/2 read as reuse/taylor1/taylor2."""
    if spec.name == "taylor":
        order = spec.params.get("order", 1)
        return "reuse" if order == 0 else f"taylor{order}"
    extra = ",".join(f"{k}={v}" for k, v in sorted(spec.params.items()))
    return f"{spec.name}({extra})" if extra else spec.name


def candidate_run(
    assembly: Assembly, spec: PluginSpec, schedule: list[float], host: PluginHost | None
) -> ResolvedRun:
    """The run with its predictor replaced by ``spec`` (the run's history mode when the family has one and
    ``spec`` leaves it out), bound to ``schedule``.

    :raises ConfigError: if ``spec`` does not fit the run.
    """
    from lesa_core.trainer import with_schedule  # the package imports this module

    params = dict(spec.params)
    run = assembly.run.derive(predictor={"name": spec.name, **params}, host=host)
    if "history" in run.plugins.predictor_cls.Config.model_fields and "history" not in params:
        params["history"] = assembly.predictor.history_mode
        run = assembly.run.derive(predictor={"name": spec.name, **params}, host=host)
    return with_schedule(run, schedule, host=host)


def build_candidate(
    assembly: Assembly,
    spec: PluginSpec,
    schedule: list[float],
    host: PluginHost | None,
) -> LinearPredictor | None:
    """The run's predictor replaced by ``spec`` (same history mode when the family has one), or ``None``
    with a warning when the family is not registered, cannot be built here, or is not linear."""
    try:
        run = candidate_run(assembly, spec, schedule, host)
        predictor = Binding(run, assembly.adapter, assembly.tap).build_predictor().float()
    except (ConfigError, LesaError) as error:
        logger.warning("training.start: skipping '%s': %s", label(spec), str(error).splitlines()[0])
        return None
    if not isinstance(predictor, LinearPredictor):
        logger.warning("training.start: skipping '%s': it is not a linear forecaster", label(spec))
        return None
    return predictor.to(next(iter(assembly.predictor.parameters())).device).eval()


def fitted_candidates(
    assembly: Assembly,
    specs: Sequence[PluginSpec],
    decisions: Sequence[Decision],
    times: Tensor,
    train_taps: dict[str, Tensor],
    schedule: list[float],
    host: PluginHost | None,
) -> Iterator[tuple[PluginSpec, LinearPredictor]]:
    """Every buildable candidate of ``specs`` (:func:`build_candidate`), a closed-form family fitted on
    ``train_taps`` first."""
    for spec in specs:
        candidate = build_candidate(assembly, spec, schedule, host)
        if candidate is None:
            continue
        if isinstance(candidate, ClosedFormFit):
            fit_closed_form(candidate, decisions, times, train_taps)
        yield spec, candidate


@dataclass
class StartChoice:
    """What :func:`choose_start` measured: each candidate's validation score and the chosen one."""

    scores: dict[str, float] = field(default_factory=dict)
    chosen: str | None = None
    coefficient_error: float | None = None
    seconds: float = 0.0
    spec: PluginSpec | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "candidates": {k: round(v, 4) for k, v in self.scores.items()},
            "chosen": self.chosen,
            "coefficient_error": self.coefficient_error,
        }


def score_floor(
    assembly: Assembly,
    validator: ClosedLoopValidator,
    specs: Sequence[PluginSpec],
    decisions: Sequence[Decision],
    times: Tensor,
    train_taps: dict[str, Tensor],
    schedule: list[float],
    host: PluginHost | None = None,
) -> tuple[StartChoice, LinearPredictor | None]:
    """Score every candidate of ``training.start`` on the validation slice (a closed-form family fitted on the
    training slice first); the scores and the best candidate (``None`` if none could be built)."""
    choice = StartChoice()
    built: dict[str, tuple[PluginSpec, LinearPredictor]] = {}

    def consider(name: str, spec: PluginSpec, candidate: LinearPredictor) -> None:
        choice.scores[name] = validator.score(candidate)
        built[name] = (spec, candidate)
        logger.info(
            "validation (closed loop, %d prompts): floor candidate %s %.3f dB",
            len(validator.rows),
            name,
            choice.scores[name],
        )

    for spec, candidate in fitted_candidates(assembly, specs, decisions, times, train_taps, schedule, host):
        consider(label(spec), spec, candidate)
    singles = sorted(choice.scores, key=choice.scores.__getitem__, reverse=True)
    carriers = [n for n in singles if isinstance(built[n][1], ClosedFormFit)]
    if len(singles) >= 2 and carriers:
        first = singles[0]  # blended with the best of another family: forecasters that err differently
        others = [n for n in singles[1:] if built[n][0].name != built[first][0].name] or singles[1:]
        second, carrier = others[0], max(carriers, key=lambda n: built[n][1].history_size)
        for weight in BLEND_WEIGHTS:
            blend = fit_blend(assembly, built[carrier][0], built[first][1], built[second][1], weight, decisions,
                              times, train_taps, schedule, host)
            if blend is not None:
                consider(f"{weight:g}·{first} + {1 - weight:g}·{second}", built[carrier][0], blend)
    if choice.scores:
        choice.chosen = max(choice.scores, key=choice.scores.__getitem__)
        choice.spec = built[choice.chosen][0]
        return choice, built[choice.chosen][1]
    return choice, None


BLEND_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 0.75)
"""The weights ``w`` of the floor's blends ``w · best + (1 − w) · other``: its best candidate and the best one of
another family (of the second best when every candidate is of one family)."""


def fit_blend(
    assembly: Assembly,
    carrier: PluginSpec,
    first: LinearPredictor,
    second: LinearPredictor,
    weight: float,
    decisions: Sequence[Decision],
    times: Tensor,
    train_taps: dict[str, Tensor],
    schedule: list[float],
    host: PluginHost | None,
) -> LinearPredictor | None:
    """``weight · first + (1 − weight) · second`` as one closed-form predictor of the ``carrier`` family: a
    fresh ``carrier`` fitted, by its own closed form, to the blend's teacher-forced forecasts — a blend of two
    linear forecasters is linear over the history, so a closed-form family that reads at least both
    histories reproduces it (up to its ridge). ``None`` when the carrier reads fewer history entries than
    one of the two or cannot be built.

    Two forecasters that err differently average out part of their errors: on the GPU-trained video model
    the 8-tap closed-form fit and Taylor-1 tie alone and their even blend leads both by more than 1 dB, while
    blends of two closed-form fits gained nothing on its validation slice (docs/results.md)."""
    predictor = build_candidate(assembly, carrier, schedule, host)
    if predictor is None or predictor.history_size < max(first.history_size, second.history_size):
        return None
    return fit_blend_into(predictor, first, second, weight, decisions, times, train_taps)


def fit_blend_into(
    predictor: LinearPredictor,
    first: LinearPredictor,
    second: LinearPredictor,
    weight: float,
    decisions: Sequence[Decision],
    times: Tensor,
    taps: dict[str, Tensor],
) -> LinearPredictor | None:
    """Fit the closed-form ``predictor`` (in place) to ``weight · first + (1 − weight) · second``'s forecasts on
    the teacher-forced examples of ``taps``; ``None`` if it has no closed form."""
    if not isinstance(predictor, ClosedFormFit):
        return None

    def blended(inputs: ForecastInput) -> Tensor:
        a = first(inputs.last(min(first.history_size, len(inputs.features))))
        b = second(inputs.last(min(second.history_size, len(inputs.features))))
        return weight * a.float() + (1.0 - weight) * b.float()

    teacher = TeacherForcing(predictor, decisions, times)
    with torch.no_grad():
        predictor.fit_closed_form(
            Example(example.inputs, blended(example.inputs))
            for example in teacher_forced_examples(teacher, taps)
        )
    return predictor


@dataclass
class KeptCandidate:
    """A ``training.start`` candidate returned in place of the trained family (``training.floor: keep``):
    its spec and the fitted predictor that was scored."""

    spec: PluginSpec
    predictor: LinearPredictor


def apply_floor(
    assembly: Assembly,
    keeper: BestKeeper,
    choice: StartChoice,
    best: LinearPredictor | None,
    decisions: Sequence[Decision],
    times: Tensor,
    keep: bool = True,
) -> tuple[dict[str, Any], KeptCandidate | None]:
    """After training: if the kept weights score below the best floor candidate on the validation slice, set
    the learned predictor to reproduce that candidate's coefficients and keep them when they score better
    (scored as ``floor <name>``); if even that scores below the candidate and ``keep``, the candidate itself
    is returned (``training.floor``). What happened, for the report, and the candidate to return, if any."""
    if best is None or choice.chosen is None:
        return {"applied": False}, None
    floor = choice.scores[choice.chosen]
    if keeper.best_score >= floor:
        return {"applied": False, "trained_db": round(keeper.best_score, 4), "floor_db": round(floor, 4)}, None
    learner = TeacherForcing(assembly.predictor, decisions, times)
    choice.coefficient_error = start_from_targets(assembly.predictor, coefficient_targets(best, learner))
    keeper.consider(f"floor {choice.chosen}")
    keeper.restore()
    kept = None
    if keep and keeper.best_score < floor and choice.spec is not None:
        kept = KeptCandidate(choice.spec, best)
    return {
        "applied": kept is None and keeper.best_label == f"floor {choice.chosen}",
        "kept_candidate": kept is not None,
        "trained_db": round(max(s for lbl, s in keeper.scores if not lbl.startswith("floor")), 4),
        "reproduction_db": round(keeper.scores[-1][1], 4),
        "floor_db": round(floor, 4),
        "coefficient_error": choice.coefficient_error,
    }, kept


def choose_start(
    assembly: Assembly,
    validator: ClosedLoopValidator,
    specs: Sequence[PluginSpec],
    decisions: Sequence[Decision],
    times: Tensor,
    train_taps: dict[str, Tensor],
    schedule: list[float],
    host: PluginHost | None = None,
) -> StartChoice:
    """Score every start candidate on the validation slice and set the learned predictor to the best one's
    coefficients (it must be able to: :func:`can_start_from_coefficients`). Not the default any more (training
    from the best candidate trailed training from the family's own initialisation by 1.5 dB at N = 7 and 4 dB
    at N = 10 on the embedded model, docs/results.md): the trainer uses :func:`score_floor` and
    :func:`apply_floor`."""
    choice = StartChoice()
    best: LinearPredictor | None = None
    for spec, candidate in fitted_candidates(assembly, specs, decisions, times, train_taps, schedule, host):
        name = label(spec)
        choice.scores[name] = validator.score(candidate)
        logger.info(
            "validation (closed loop, %d prompts): start candidate %s %.3f dB",
            len(validator.rows),
            name,
            choice.scores[name],
        )
        if choice.chosen is None or choice.scores[name] > choice.scores[choice.chosen]:
            choice.chosen, best = name, candidate
    if best is not None:
        learner = TeacherForcing(assembly.predictor, decisions, times)
        choice.coefficient_error = start_from_targets(assembly.predictor, coefficient_targets(best, learner))
    return choice


def describe_selection(selection: dict[str, Any]) -> str | None:
    """One line for the CLI report: which start won and by how much, which epoch was kept and its gain
    (``None`` without a validation slice)."""
    count = selection.get("validation_prompts", 0)
    if not count:
        return None
    parts = []
    if "closed_form" in selection:
        fit = selection["closed_form"]
        parts.append(
            f"closed-form fit of {fit['steps']:g} forecast steps (squared error {fit['residual']:.3f} of "
            f"reuse's on the training slice); validation {selection.get('validation_db', math.nan):.2f} dB"
        )
    start = selection.get("start")
    if start and start.get("chosen"):
        scores = start["candidates"]
        others = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != start["chosen"])
        parts.append(f"start: {start['chosen']} ({scores[start['chosen']]:.2f} dB; {others})")
    floor = selection.get("floor")
    if floor and floor.get("chosen"):
        scores = floor["candidates"]
        others = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != floor["chosen"])
        if floor.get("kept_candidate"):
            verdict = (f"training and the reproduction of its coefficients fell short, the bundle is "
                       f"{floor['chosen']} itself")
        elif floor.get("applied"):
            verdict = f"training fell short, the predictor reproduces {floor['chosen']}"
        else:
            verdict = "training beat it"
        parts.append(f"floor: {floor['chosen']} ({scores[floor['chosen']]:.2f} dB; {others}) — {verdict}")
    epochs = selection.get("epochs")
    if floor and floor.get("kept_candidate"):
        parts.append(f"kept: {floor['chosen']} ({floor['floor_db']:.2f} dB)")
    elif epochs:
        parts.append(
            f"kept: {epochs['best']} ({epochs['best_db']:.2f} dB, {epochs['gain_over_start_db']:+.2f} dB over "
            "the start)"
        )
    metric = "image PSNR" if (epochs or {}).get("space", "image") == "image" else "latent SNR"
    return f"selection on {count} validation prompts ({metric}, closed loop): " + "; ".join(parts)
