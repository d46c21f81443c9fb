"""Property-based fuzzing: over run configs (dicts and YAML / JSON / TOML text), command lines and bundle
metadata, **nothing but a** :class:`~lesa_core.errors.LesaError` **escapes** — every input is either
accepted or refused with an error LESA raises on purpose.

Each property is one case of the tally (its examples are not counted one by one); ``LESA_FUZZ_EXAMPLES``
sets the examples per property (150 by default). The examples are drawn
from the real vocabulary (field names, plugin names, commands, flags) mixed with nonsense, so that most
of them get deep into the code before they are refused.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import Outcome, plugin_modules, record

from lesa_core.errors import LesaError
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=int(os.environ.get("LESA_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
"""150 examples per property in CI; ``LESA_FUZZ_EXAMPLES=5000`` for a longer hunt."""


@functools.cache
def _host() -> PluginHost:
    import lesa_embedded.flux.source

    return PluginHost.create(autoload=False, plugins=[*plugin_modules(), lesa_embedded.flux.source])


def _property(case: str, prop: Callable[[], None]) -> None:
    """Run a hypothesis property and record it as one case of the tally."""
    try:
        prop()
    except BaseException as exc:
        record(Outcome(case, "fuzz", False, False, [], [], f"{type(exc).__name__}: {exc}"))
        raise
    record(Outcome(case, "fuzz", False, True, [], []))


def _only_lesa_errors(action: Callable[[], Any]) -> None:
    try:
        action()
    except LesaError as exc:
        message = str(exc)
        assert message.strip(), "an empty message"
        assert len(message) < 20_000, f"a message of {len(message)} characters"


# ----------------------------------------------------------------------------- run configs


KEYS = ["adapter", "tap", "predictor", "router", "policy", "guard_non_finite", "training", "model", "name", "order",
        "taps", "hidden", "time_encoding", "schedule", "schedule_atol", "per_channel", "history", "relative_units",
        "interval", "warmup", "force_full", "phase", "boundaries", "num_stages", "min_steps", "prompts",
        "num_prompts", "num_steps", "seed", "token_subsample", "loss", "stage1", "stage2", "epochs", "lr",
        "batch_size", "update", "replay_epochs", "weight_decay", "clip_grad_norm", "data_dir", "bogus", "", "<<"]
WORDS = ["taylor", "kan", "mlp", "interval", "threshold", "change_points", "hidden", "output", "normed", "auto",
         "flux", "schedule", "relative", "steps", "full", "replay", "online", "latent", "tap", "KAN", "", "nope"]
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-3, 64)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8) | st.sampled_from(WORDS))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5),
                      max_leaves=25)
configs = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def test_fuzz_run_configs() -> None:
    from lesa_core.run import resolve_run

    @FUZZ
    @given(configs)
    def prop(config: dict[str, Any]) -> None:
        config.pop("bundle", None)  # would be looked up on disk or on the Hub
        if isinstance(config.get("model"), str):
            config.pop("model")
        _only_lesa_errors(lambda: resolve_run(config, host=_host()))

    _property("fuzz-run-configs", prop)


config_texts = (st.text(max_size=120) | configs.map(lambda d: json.dumps(d, default=str))
                | st.lists(st.sampled_from(["predictor:", " name: kan", "  taps: [1, 2]", "&a", "*a", "<<: *a",
                                            "- ", "{", "}", "[", "]", ":", "training:", "  stage1: {lr: 1e30}",
                                            "tap: ''", "\t", "!!binary", "!!python/name:os.system", "a: b",
                                            "a: b", "---", "..."])).map("\n".join))


def test_fuzz_config_files() -> None:
    from lesa_core.run import resolve_run

    folder = Path(tempfile.mkdtemp(prefix="lesa-fuzz-"))
    try:
        @FUZZ
        @given(config_texts, st.sampled_from([".yaml", ".json", ".toml", ".yml"]))
        def prop(text: str, suffix: str) -> None:
            file = folder / f"run{suffix}"
            file.write_bytes(text.encode("utf-8", errors="replace"))
            _only_lesa_errors(lambda: resolve_run(file, host=_host()))

        _property("fuzz-config-files", prop)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- command lines


COMMANDS = ["plugins", "config", "collect", "train", "sample", "demo", "bench", "validate", "nosuch", "--json"]
FLAGS = ["--config", "--model", "--device", "--data-dir", "--threads", "--quiet", "--out", "--stages", "--batch-size",
         "--bundle", "--prompt", "--num-prompts", "--steps", "--seed", "--compare", "--eval-prompts",
         "--extra-interval", "--speed", "--quality", "--json", "--repeats", "--methods", "--interval", "--warmup",
         "--verbose", "--steps-sweep", "--compare-taps", "--print", "--bogus", "-x"]
ARG_VALUES = ["0", "1", "2", "-1", "7", "1,2", "3", "", "cpu", "cuda", "cuda:9", "mps", "meta", "tpu", "abc",
              "1e3", "embedded", "tiny", "cpu-bench", "full,lesa", "NaN", str(2**70), "/nonexistent/x.yaml",
              "/proc/lesa-fuzz", "x.safetensors", "kan-v1.2", "owner/name", "--", "-"]


def _argv(draw: st.DrawFn) -> list[str]:
    argv = [draw(st.sampled_from(COMMANDS))]
    if argv[0] == "config":
        argv.append(draw(st.sampled_from(["validate", "show", ""])))
    for _ in range(draw(st.integers(0, 6))):
        argv.append(draw(st.sampled_from(FLAGS + ARG_VALUES)))
    return argv


argvs = st.composite(_argv)()


def _runs_no_model(args: argparse.Namespace) -> bool:
    """Commands that finish at once (no model is loaded, nothing trained)."""
    return args.command in ("plugins", "config")


def test_fuzz_command_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command line is parsed (and, for `plugins` and `config`, run; for the others, their run resolved
    as far as the model source and the config) without anything but a LesaError escaping."""
    from lesa_core.cli import build_parser, main
    from lesa_core.cli.arguments import resolve_command_run

    monkeypatch.setattr("lesa_core.plugins._HOST", _host())  # the built-ins, whatever is installed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub-like id is looked up offline
    parser = build_parser()
    folder = Path(tempfile.mkdtemp(prefix="lesa-fuzz-cli-"))
    monkeypatch.chdir(folder)  # relative paths in the vocabulary stay here

    @FUZZ
    @given(argvs)
    def prop(argv: list[str]) -> None:
        try:
            args = parser.parse_args(argv)
        except LesaError:
            code = main(argv)
            assert code == 2
            lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("lesa: error: "), lines
            return
        if _runs_no_model(args):
            assert main(argv) in (0, 2)
            capsys.readouterr()
        elif hasattr(args, "config") and args.command != "bench":
            _only_lesa_errors(lambda: resolve_command_run(args))

    try:
        _property("fuzz-command-lines", prop)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- bundle metadata


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:4]):
            out += _paths(item, (*prefix, index))
    return out


def _mutate(meta: dict[str, Any], path: tuple[Any, ...], action: str, new: Any) -> Any:
    if not path:
        return new if action == "replace" else meta
    parent: Any = meta
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[key]
    elif action == "delete" and isinstance(parent, list):
        parent.pop(key)
    elif action == "wrap":
        parent[key] = [parent[key]]
    else:
        parent[key] = new
    return meta


def test_fuzz_bundle_metadata(kan_bundle: Path) -> None:
    """Random edits of a real bundle's metadata (a value replaced, wrapped in a list or deleted, anywhere in
    it), and random bytes instead of it: `LesaBundle.from_pretrained` loads it or raises a LesaError."""
    from lesa_core import LesaBundle
    from lesa_core.bundle import BUNDLE_CONFIG_NAME

    original = json.loads((kan_bundle / BUNDLE_CONFIG_NAME).read_text())
    paths = _paths(original)
    folder = Path(tempfile.mkdtemp(prefix="lesa-fuzz-bundle-"))
    bundle = folder / "bundle"
    shutil.copytree(kan_bundle, bundle)

    @FUZZ
    @given(st.lists(st.tuples(st.sampled_from(paths), st.sampled_from(["replace", "delete", "wrap"]), values),
                    min_size=1, max_size=3),
           st.binary(max_size=64) | st.just(b""))
    def prop(edits: list[tuple[tuple[Any, ...], str, Any]], noise: bytes) -> None:
        meta = json.loads(json.dumps(original))
        for path, action, new in edits:
            try:
                meta = _mutate(meta, path, action, new)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier edit removed or replaced this path
        text = json.dumps(meta, default=str) if noise == b"" else None
        (bundle / BUNDLE_CONFIG_NAME).write_bytes(text.encode() if text is not None else noise)
        _only_lesa_errors(lambda: LesaBundle.from_pretrained(bundle, host=_host()))

    try:
        _property("fuzz-bundle-metadata", prop)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_fuzz_names_of_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever string is given where a config or a bundle goes (a path, a Hub-like id, nonsense)."""
    from lesa_core.run import resolve_run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = st.text(alphabet=string.ascii_letters + string.digits + "./-_~ :", max_size=24)

    @FUZZ
    @given(names)
    def prop(name: str) -> None:
        _only_lesa_errors(lambda: resolve_run(str(tmp_path / name) if name.startswith(".") else name, host=_host()))

    _property("fuzz-config-and-bundle-names", prop)
