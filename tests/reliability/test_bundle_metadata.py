"""Bundle metadata checked before anything is built from it: sizes bounded (``channels: 2**40`` once tried
to allocate 13 TB in ``LesaBundle.from_pretrained``), types and numbers checked, nesting bounded (deep
JSON once raised ``RecursionError``), duplicate keys refused, and the predictor built on the meta device
and compared with the weights file's header before a byte is allocated for it."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import edit_bundle_meta, expect_error

import lesa_core
from lesa_core import LesaBundle
from lesa_core.bundle import BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME
from lesa_core.errors import BundleCorruptError, BundleMismatchError, ConfigError
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration


_meta = edit_bundle_meta


def _text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        (bundle / BUNDLE_CONFIG_NAME).write_text(edit((bundle / BUNDLE_CONFIG_NAME).read_text()))

    return apply


def _header(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Edit the weights file's header (the tensors' bytes are kept) and record the new digest."""

    def apply(bundle: Path) -> None:
        weights = bundle / BUNDLE_WEIGHTS_NAME
        raw = weights.read_bytes()
        (size,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + size])
        edit(header)
        encoded = json.dumps(header).encode()
        weights.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + size:])
        meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
        meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        (bundle / BUNDLE_CONFIG_NAME).write_text(json.dumps(meta))

    return apply


def _predictor(**params: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["run_config"]["predictor"].update(params)


def _first_tensor_shape(shape: list[int]) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = shape

    return edit


def _deep(levels: int) -> Callable[[str], str]:
    return lambda text: text[:-2] + ', "extra_deep": ' + "[" * levels + "]" * levels + "}\n"


TAMPERED: list[tuple[str, Callable[[Path], None], type[Exception], list[str]]] = [
    ("metadata-channels-2-pow-40", _meta(lambda m: m.update(channels=2**40)), BundleCorruptError,
     ["channels must be null or an integer from 1 to", "re-download or re-export"]),
    ("metadata-channels-zero", _meta(lambda m: m.update(channels=0)), BundleCorruptError, ["channels"]),
    ("metadata-channels-negative", _meta(lambda m: m.update(channels=-64)), BundleCorruptError, ["channels"]),
    ("metadata-channels-bool", _meta(lambda m: m.update(channels=True)), BundleCorruptError, ["channels"]),
    ("metadata-channels-string", _meta(lambda m: m.update(channels="64")), BundleCorruptError, ["channels"]),
    ("metadata-schedule-nan", _meta(lambda m: m["schedule"].__setitem__(1, float("nan"))), BundleCorruptError,
     ["schedule must be null or a list", "finite"]),
    ("metadata-schedule-huge", _meta(lambda m: m.update(schedule=[0.5] * 150_000)), BundleCorruptError,
     ["schedule must be null or a list of at most"]),
    ("metadata-boundaries-strings", _meta(lambda m: m.update(stage_boundaries=["high", "low"])), BundleCorruptError,
     ["stage_boundaries"]),
    ("metadata-digest-not-hex", _meta(lambda m: m.update(weights_sha256="z" * 64)), BundleCorruptError,
     ["64-character hex digest"]),
    ("metadata-extra-a-list", _meta(lambda m: m.update(extra=[1, 2])), BundleCorruptError, ["extra must be an object"]),
    ("metadata-nested-10000-deep", _text(_deep(10_000)), BundleCorruptError, ["nested more than", "re-export"]),
    ("metadata-nested-100-deep", _text(_deep(100)), BundleCorruptError, ["nested more than"]),
    ("metadata-duplicate-key", _text(lambda t: t[:-2] + ', "tap": "output"}\n'), BundleCorruptError,
     ["duplicate key 'tap'"]),
    ("metadata-too-large", _text(lambda t: t + " " * (17 * 2**20)), BundleCorruptError, ["MiB"]),
    ("metadata-not-utf8", lambda b: (b / BUNDLE_CONFIG_NAME).write_bytes(b'{"tap": "\xff"}'), BundleCorruptError,
     ["unreadable JSON"]),
    ("metadata-hidden-widths-huge", _meta(_predictor(hidden=[4096, 4096])), BundleMismatchError,
     ["do not fit the predictor", "expects"]),  # 2 GB of KAN if it were built: refused before
    ("metadata-hidden-widths-beyond-bound", _meta(_predictor(hidden=[100_000, 100_000])), ConfigError,
     ["predictor.hidden", "less than or equal to 4096"]),
    ("metadata-taps-huge", _meta(_predictor(taps=[64, 64, 64])), BundleMismatchError, ["do not fit the predictor"]),
    ("metadata-taps-beyond-bound", _meta(_predictor(taps=[10**6, 10**6, 10**6])), ConfigError, ["predictor.taps"]),
    ("metadata-per-channel-huge", _meta(lambda m: (m.update(channels=2**20),
                                                   m["run_config"]["predictor"].update(per_channel=True))),
     BundleMismatchError, ["do not fit the predictor", "1048576"]),
    ("weights-header-shape-huge", _header(_first_tensor_shape([2**40])), BundleMismatchError,
     ["has shape (1099511627776,)"]),
    ("weights-header-shape-not-ints", _header(_first_tensor_shape(["many"])), BundleCorruptError,
     ["not a readable safetensors"]),
    ("weights-header-a-list", lambda b: _header(lambda h: None)(b) or _overwrite_header(b, b"[1, 2, 3]"),
     BundleCorruptError, ["not a readable safetensors"]),
]


def _overwrite_header(bundle: Path, header: bytes) -> None:
    weights = bundle / BUNDLE_WEIGHTS_NAME
    raw = weights.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    weights.write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + size:])
    meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (bundle / BUNDLE_CONFIG_NAME).write_text(json.dumps(meta))


@pytest.mark.parametrize(("case", "damage", "error", "words"), TAMPERED, ids=[c[0] for c in TAMPERED])
def test_from_pretrained_checks_metadata_before_building(case: str, damage: Callable[[Path], None],
                                                         error: type[Exception], words: list[str], host: PluginHost,
                                                         kan_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(kan_bundle, bundle)
    damage(bundle)
    began = time.perf_counter()
    exc = expect_error(case, "bundle", lambda: LesaBundle.from_pretrained(bundle, host=host), error, words,
                       folders=[tmp_path])
    assert time.perf_counter() - began < 20, "checked too late (something large was built)"
    assert len(str(exc)) < 2000


@pytest.mark.parametrize("case", ["metadata-channels-2-pow-40", "metadata-hidden-widths-huge",
                                  "metadata-nested-10000-deep"])
def test_attach_checks_metadata_before_building(case: str, flux_pipe: Any, flux_inputs: dict[str, Any],
                                                host: PluginHost, kan_bundle: Path, tmp_path: Path) -> None:
    damage, error, words = next((d, e, w) for c, d, e, w in TAMPERED if c == case)
    bundle = tmp_path / "bundle"
    shutil.copytree(kan_bundle, bundle)
    damage(bundle)
    expect_error(f"attach-{case}", "bundle", lambda: lesa_core.attach(flux_pipe, bundle, host=host), error, words,
                 folders=[tmp_path], model=flux_pipe.transformer, inputs=flux_inputs)
