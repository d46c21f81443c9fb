"""Shared machinery of the reliability suite: the case tally, model snapshots, stray-file checks.

Every bad-input case goes through :func:`expect_error`: it snapshots the model and the folders the
case may touch, runs the case, and checks that

* the expected :class:`~lesa_core.errors.LesaError` subclass is raised (nothing else),
* its message names what was wrong (the case's words) and says what to do (an imperative such as
  "use", "pass", "drop", "train", "re-export", ...),
* no file or folder appeared that was not there before (no half-written or temporary files),
* the model is unmodified: same ``state_dict`` (bit for bit), same ``forward`` signature, no instance
  ``forward`` left, no hook left behind, and the same output on fixed inputs.

The outcome of every case is recorded in :data:`TALLY`; ``conftest.py`` prints the totals at the end
of the run (they are the numbers quoted in ``docs/reliability.md``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesa_adapters import hook_names
from lesa_core.errors import LesaError

ACTION = re.compile(
    r"\b(use|pass|set|drop|remove|train|retrain|re-export|re-download|delete|run|sample|check|fix|install|give|"
    r"call|save|leave|register|disable|uninstall|update|choose|start|download|write|add)\b"
    r"|\b(should be|should have|must be|must lie|allowed keys here|registered \w+:)",
    re.IGNORECASE,
)
"""What a clear message contains besides what was wrong: an imperative that says what to do next, or
a statement of what is allowed ("must be ...", "allowed keys here: ...", "Registered predictors: ...")."""

_NOT_PROSE = re.compile(r"\S*/\S*|\S+\.(?:yaml|yml|toml|json|ini|safetensors)\b|'[^']*'|\(got [^)]*\)")


def gives_guidance(message: str) -> bool:
    """``True`` if ``message`` says what to do (paths, file names and quoted values do not count)."""
    return bool(ACTION.search(_NOT_PROSE.sub(" ", message)))


@dataclass
class Outcome:
    case: str
    category: str
    error: bool  # an error case (else a behaviour case: guard, reset, ...)
    clear: bool
    stray: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    message: str = ""


STEPS = 6
"""Steps of the trained bundle's schedule (a schedule-bound predictor refuses any other count)."""

KAN_CONFIG: dict[str, Any] = {
    "predictor": {"name": "kan", "taps": [3, 4, 4], "hidden": [8, 8], "time_encoding": "schedule"},
    "policy": {"name": "interval", "interval": 3, "warmup": 2, "force_full": []},
    "training": {"num_steps": STEPS, "seed": 3, "stage1": {"epochs": 2, "batch_size": 4, "lr": 0.003},
                 "stage2": {"epochs": 0}},
}
CALL = {"height": 32, "width": 32, "max_sequence_length": 16}


def plugin_modules() -> list[object]:
    import lesa_adapters.flux
    import lesa_adapters.hunyuan_video
    import lesa_adapters.qwen_image
    import lesa_predictors.kan
    import lesa_predictors.mlp
    import lesa_predictors.taylor
    import lesa_schedulers.policies.interval
    import lesa_schedulers.routers.change_points
    import lesa_schedulers.routers.threshold

    return [lesa_predictors.taylor, lesa_predictors.kan, lesa_predictors.mlp, lesa_schedulers.policies.interval,
            lesa_schedulers.routers.threshold, lesa_schedulers.routers.change_points, lesa_adapters.flux, lesa_adapters.qwen_image,
            lesa_adapters.hunyuan_video]


TALLY: list[Outcome] = []
"""Every case run in this session (printed by ``conftest.pytest_terminal_summary``)."""


def record(outcome: Outcome) -> None:
    TALLY[:] = [o for o in TALLY if o.case != outcome.case]
    TALLY.append(outcome)


# ----------------------------------------------------------------------------- files


def tree(*folders: Path) -> set[str]:
    """Every path under ``folders`` (hidden ones included)."""
    found: set[str] = set()
    for folder in folders:
        if folder.exists():
            found.update(str(p) for p in folder.rglob("*"))
    return found


def temporaries(*folders: Path) -> list[str]:
    """Hidden (``.name.XXXX``) files and folders: what an interrupted atomic write would leave."""
    return sorted(str(p) for folder in folders if folder.exists() for p in folder.rglob(".*"))


def edit_bundle_meta(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """A damage for a copy of a bundle: ``edit`` its ``lesa_bundle.json`` (a dict, edited in place)."""
    import json

    from lesa_core.bundle import BUNDLE_CONFIG_NAME

    def apply(bundle: Path) -> None:
        meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
        edit(meta)
        (bundle / BUNDLE_CONFIG_NAME).write_text(json.dumps(meta))

    return apply


# ----------------------------------------------------------------------------- models


def _hooks(model: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {f"{name}:diffusers": sorted(hooks) for name, hooks in hook_names(model).items()}
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks"):
            if getattr(module, kind):
                out[f"{name}:{kind}"] = len(getattr(module, kind))
        if "forward" in module.__dict__:
            out[f"{name}:instance_forward"] = True
    return out


class ModelSnapshot:
    """What must not change when a case fails: weights, signature, hooks, output on fixed inputs."""

    def __init__(self, model: nn.Module, inputs: dict[str, Any] | None = None) -> None:
        self.model = model
        self.inputs = inputs
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.signature = inspect.signature(model.forward)
        self.hooks = _hooks(model)
        self.training = model.training
        self.output = self._output()

    def _output(self) -> torch.Tensor | None:
        if self.inputs is None:
            return None
        with torch.no_grad():
            out = self.model(**self.inputs, return_dict=False)[0]
        return out.detach().clone()

    def differences(self) -> list[str]:
        problems = []
        state = self.model.state_dict()
        if set(state) != set(self.state):
            problems.append("state_dict keys changed")
        else:
            changed = [k for k, v in state.items() if not torch.equal(v, self.state[k])]
            if changed:
                problems.append(f"state_dict changed: {changed[:3]}")
        if inspect.signature(self.model.forward) != self.signature:
            problems.append("forward signature changed")
        hooks = _hooks(self.model)
        if hooks != self.hooks:
            problems.append(f"hooks changed: {hooks} (was {self.hooks})")
        if self.model.training != self.training:
            problems.append("train/eval mode changed")
        if self.output is not None:
            now = self._output()
            assert now is not None
            if not torch.equal(now, self.output):
                problems.append("output on fixed inputs changed")
        return problems


# ----------------------------------------------------------------------------- the case runner


def expect_error(
    case: str,
    category: str,
    action: Callable[[], Any],
    error: type[BaseException],
    words: Iterable[str] = (),
    *,
    folders: Iterable[Path] = (),
    model: nn.Module | None = None,
    inputs: dict[str, Any] | None = None,
    allowed_new: Callable[[str], bool] | None = None,
) -> LesaError:
    """Run one bad-input case (see the module docstring); returns the exception for extra checks."""
    folders = [Path(f) for f in folders]
    snapshot = ModelSnapshot(model, inputs) if model is not None else None
    before = tree(*folders)
    raised: BaseException | None = None
    try:
        action()
    except BaseException as exc:
        raised = exc
    message = str(raised) if raised is not None else "(nothing raised)"
    new = sorted(p for p in tree(*folders) - before if not (allowed_new and allowed_new(p)))
    leaks = snapshot.differences() if snapshot is not None else []
    words = list(words)
    missing_words = [w for w in words if w.lower() not in message.lower()]
    right_type = isinstance(raised, error) and isinstance(raised, LesaError)
    clear = right_type and not missing_words and gives_guidance(message)
    record(Outcome(case, category, True, clear, new, leaks, f"{type(raised).__name__}: {message}"))
    if not isinstance(raised, error):
        raise AssertionError(f"{case}: expected {error.__name__}, got {type(raised).__name__}: {message}") from raised
    assert isinstance(raised, LesaError), f"{case}: {type(raised).__name__} is not a LesaError"
    assert not missing_words, f"{case}: message lacks {missing_words}: {message}"
    assert gives_guidance(message), f"{case}: message does not say what to do: {message}"
    assert new == [], f"{case}: files left behind: {new}"
    assert leaks == [], f"{case}: model modified: {leaks}"
    return raised


def expect_behaviour(case: str, category: str, check: Callable[[], list[str]], *,
                     model: nn.Module | None = None, inputs: dict[str, Any] | None = None) -> None:
    """Run one behaviour case (no error expected): ``check`` returns the problems it found; the model
    must be unmodified afterwards (the case removes what it attached)."""
    snapshot = ModelSnapshot(model, inputs) if model is not None else None
    problems = check()
    leaks = snapshot.differences() if snapshot is not None else []
    record(Outcome(case, category, False, not problems, [], leaks))
    assert problems == [], f"{case}: {problems}"
    assert leaks == [], f"{case}: model modified: {leaks}"



# ----------------------------------------------------------------------------- the command line


def cli_error_lines(stderr: str) -> list[str]:
    """The stderr lines of a ``lesa`` run that are not ``lesa: note:`` lines (what must be exactly one
    ``lesa: error: ...`` line for a refused command)."""
    return [line for line in stderr.strip().splitlines() if line.strip() and not line.startswith("lesa: note:")]


def run_cli_case(case: str, argv: list[str], words: Iterable[str], capsys: Any, folders: Iterable[Path], *,
                 category: str = "cli", allowed_new: Callable[[str], bool] | None = None) -> str:
    """One refused ``lesa`` command, run in-process through :func:`lesa_core.cli.main`: exit status 2,
    stderr holding exactly one line ``lesa: error: ...`` (``lesa: note:`` lines aside: no progress bar, no
    third-party notice, no traceback) that contains ``words`` and says what to do, and nothing written
    under ``folders``. Returns stderr."""
    from lesa_core.cli import main

    folders = [Path(f) for f in folders]
    before = tree(*folders)
    try:
        code = main(argv)
    except SystemExit as exc:  # pragma: no cover - main() never exits by itself
        code = exc.code
    _out, err = capsys.readouterr()
    new = sorted(p for p in tree(*folders) - before if not (allowed_new and allowed_new(p)))
    lines = cli_error_lines(err)
    line = lines[0] if len(lines) == 1 else ""
    well_formed = code == 2 and line.startswith("lesa: error: ") and "Traceback" not in err
    missing = [w for w in words if w.lower() not in err.lower()]
    clear = well_formed and not missing and gives_guidance(line) and not new
    record(Outcome(case, category, True, clear, new, [], err.strip().replace("\n", " | ")))
    assert code == 2, (code, err)
    assert well_formed, f"{case}: not one `lesa: error:` line: {err}"
    assert not missing, (case, missing, err)
    assert gives_guidance(line), f"{case}: does not say what to do: {err}"
    assert new == [], f"{case}: files left behind: {new}"
    return err
