"""One round of alternating a learned schedule with training (``lesa-alternating`` in ``lesa bench --frontier``
and the zoo check): a predictor trained for the steps another predictor's schedule search chose, the steps
refitted for it, and the better of the new and the start pair kept by their closed-loop score on the
collection's validation slice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesa_core.run import ResolvedRun

__all__ = ["Alternation", "train_alternating", "validation_scores"]


@dataclass
class Alternation:
    """What :func:`train_alternating` kept: ``method`` (a method spec for :func:`~lesa_workflows.evaluate.evaluate`),
    ``kept`` (``alternated`` or ``start``), the steps the new predictor was trained for and refitted to, and
    both pairs' closed-loop scores (dB) on the collection's validation slice (empty without one)."""

    method: dict[str, Any]
    kept: str
    trained_for: list[int]
    refitted: list[int]
    validation: dict[str, float]

    def describe(self) -> str:
        scores = ", ".join(f"{k} {v:.2f} dB" for k, v in self.validation.items())
        return (f"trained for steps {self.trained_for}, refitted to steps {self.refitted}; kept {self.kept}"
                + (f" (validation: {scores})" if scores else ""))


def train_alternating(pipe: Any, run: ResolvedRun, start: Path, learned: dict[str, Any], prompts: Sequence[str],
                      *, runner: Any, out: Path, data_dir: Path, checkpoint_dir: Path,
                      show_progress: bool = True) -> Alternation:
    """One round of alternating schedule and predictor, kept only if it pays on validation.

    ``learned`` is the ``learned`` policy config fitted for the predictor of the bundle ``start``
    (:func:`~lesa_workflows.bench.frontier.learned_policy`). ``lesa train`` with ``run``'s config and that policy trains a fresh predictor for
    exactly those full steps on the collection in ``data_dir``, then refits the steps for the predictor it
    trained (:func:`lesa_core.trainer.fit_policy`); the bundle in ``out`` holds both. The new pair and the start
    pair (``start``'s predictor on ``learned``) are then sampled on the collection's validation slice, closed
    loop, as training's selection does, and the better one is kept: the alternation never returns a pair worse
    on validation than the one it started from (without a validation slice, the new pair is kept).

    Why: the schedule search uses one predictor's teacher-forced error, and a predictor trained for another
    schedule (LESA's fixed N) forecasts spans it was never trained on; retraining for the new spans helps on
    some models and not on others (docs/results.md, "Alternating the learned schedule with training")."""
    from lesa_core.bundle import read_metadata
    from lesa_core.trainer import train

    bundle, _ = train(pipe, run.derive(policy=learned), prompts, runner=runner, out=out, data_dir=data_dir,
                      checkpoint_dir=checkpoint_dir, show_progress=show_progress)
    refitted = list(read_metadata(bundle).run_config["policy"]["steps"])
    candidates = {"alternated": {"bundle": str(bundle)}, "start": {"bundle": str(start), "policy": learned}}
    validation = validation_scores(pipe, candidates, runner, data_dir)
    kept = max(validation, key=lambda name: validation[name]) if validation else "alternated"
    return Alternation(candidates[kept], kept, list(learned["steps"]), refitted, validation)


def validation_scores(pipe: Any, methods: dict[str, dict[str, Any]], runner: Any, data_dir: Path) -> dict[str, float]:
    """Each bundle method's closed-loop score (dB) on the validation slice of the collection in ``data_dir`` (the
    last prompts, as many as training kept for validation), against the full-compute outputs collection kept;
    ``{}`` when the collection has no validation slice. The methods' shared warm-up steps are computed once."""
    from lesa_core.assembly import assemble, find_transformer
    from lesa_core.replay import EVALUATION_REPLAY_BYTES, FullStepReplay
    from lesa_core.trainer import TrajectoryStore
    from lesa_core.trainer.selection import ClosedLoopValidator, validation_rows

    store = TrajectoryStore(data_dir / "trajectories")
    meta = store.read_meta()
    assert meta is not None
    replay = FullStepReplay(max_bytes=EVALUATION_REPLAY_BYTES)  # same model, prompts and seeds for every method
    references: dict[tuple[int, ...], Any] = {}
    scores: dict[str, float] = {}
    for name, method in methods.items():
        assembly = assemble(find_transformer(pipe), method)
        rows = validation_rows(len(meta.prompts), assembly.config.training.validation_prompts)
        if not rows:
            return {}
        if tuple(rows) not in references:
            references[tuple(rows)] = store.load_outputs(rows)
        validator = ClosedLoopValidator(assembly, runner, meta, rows, references=references[tuple(rows)],
                                        replay=replay)
        scores[name] = round(validator.score(assembly.predictor), 4)
    return scores
