"""Bundles: bit-exact round trip, and damaged or mismatched bundles refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lesa_core.bundle import (
    BUNDLE_CONFIG_NAME,
    BUNDLE_WEIGHTS_NAME,
    BundleMetadata,
    check_fits,
    load_weights,
    read_metadata,
    save_bundle,
)
from lesa_core.errors import BundleCorruptError, BundleMismatchError, BundleNotFoundError
from lesa_example_plugin import DampedConfig, DampedPredictor


def _meta(**overrides) -> BundleMetadata:
    fields = dict(run_config={"predictor": {"name": "damped"}}, plugins={}, model_class="pkg.Model",
                  model_fingerprint="abcd" * 4, tap="hidden", schedule=None, stage_boundaries=[0.9, 0.5],
                  channels=8)
    fields.update(overrides)
    return BundleMetadata(**fields)  # type: ignore[arg-type]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    predictor = DampedPredictor(DampedConfig(gamma=0.3))
    return save_bundle(tmp_path / "bundle", predictor, _meta())


def test_round_trip(bundle: Path) -> None:
    meta = read_metadata(bundle)
    restored = DampedPredictor(DampedConfig(gamma=1.0))
    load_weights(bundle, restored, meta)
    assert restored.gamma.item() == pytest.approx(0.3)
    assert meta.lesa_version and meta.weights_sha256


def test_save_is_atomic_and_replaces(bundle: Path) -> None:
    save_bundle(bundle, DampedPredictor(DampedConfig(gamma=0.7)), _meta())
    restored = DampedPredictor(DampedConfig())
    load_weights(bundle, restored, read_metadata(bundle))
    assert restored.gamma.item() == pytest.approx(0.7)
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["bundle"], "no temporary folders left behind"


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleNotFoundError, match="not a LESA bundle"):
        read_metadata(tmp_path / "nowhere")


def test_truncated_weights(bundle: Path) -> None:
    weights = bundle / BUNDLE_WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(BundleCorruptError, match="truncated or was altered"):
        load_weights(bundle, DampedPredictor(DampedConfig()), read_metadata(bundle))


def test_garbage_weights_with_matching_digest(bundle: Path) -> None:
    weights = bundle / BUNDLE_WEIGHTS_NAME
    weights.write_bytes(b"not a safetensors file at all")
    meta_file = bundle / BUNDLE_CONFIG_NAME
    data = json.loads(meta_file.read_text())
    import hashlib

    data["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(data))
    with pytest.raises(BundleCorruptError, match="not a readable safetensors"):
        load_weights(bundle, DampedPredictor(DampedConfig()), read_metadata(bundle))


def test_corrupt_metadata_json(bundle: Path) -> None:
    (bundle / BUNDLE_CONFIG_NAME).write_text("{ this is not json")
    with pytest.raises(BundleCorruptError, match="unreadable JSON"):
        read_metadata(bundle)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(format_version=99), "format_version 99"),
        (lambda d: d.pop("tap"), "missing: ['tap']"),
        (lambda d: d.update(surprise=1), "unknown: ['surprise']"),
        (lambda d: d.update(schedule="fast"), "schedule must be"),
        (lambda d: d.update(weights_sha256="123"), "hex digest"),
    ],
)
def test_tampered_metadata(bundle: Path, edit, words: str) -> None:
    meta_file = bundle / BUNDLE_CONFIG_NAME
    data = json.loads(meta_file.read_text())
    edit(data)
    meta_file.write_text(json.dumps(data))
    with pytest.raises(BundleCorruptError, match=words.replace("[", r"\[").replace("]", r"\]")):
        read_metadata(bundle)


def test_weights_of_another_shape(tmp_path: Path) -> None:
    class Wide(DampedPredictor):
        def __init__(self, config, context=None):
            super().__init__(config, context)
            self.extra = torch.nn.Parameter(torch.zeros(3))

    path = save_bundle(tmp_path / "wide", Wide(DampedConfig()), _meta())
    with pytest.raises(BundleMismatchError, match=r"unexpected keys \['extra'\]"):
        load_weights(path, DampedPredictor(DampedConfig()), read_metadata(path))


def test_wrong_dtype_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = save_bundle(tmp_path / "b", DampedPredictor(DampedConfig()), _meta())
    weights = path / BUNDLE_WEIGHTS_NAME
    save_file({"gamma": torch.tensor(0.5, dtype=torch.float16)}, str(weights))
    meta_file = path / BUNDLE_CONFIG_NAME
    data = json.loads(meta_file.read_text())
    import hashlib

    data["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(data))
    with pytest.raises(BundleMismatchError, match="bundles store float32"):
        load_weights(path, DampedPredictor(DampedConfig()), read_metadata(path))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"model_class": "pkg.Other", "fingerprint": "abcd" * 4, "tap": "hidden"}, "trained for pkg.Model"),
        ({"model_class": "pkg.Model", "fingerprint": "ffff" * 4, "tap": "hidden"}, "different config"),
        ({"model_class": "pkg.Model", "fingerprint": "abcd" * 4, "tap": "output"}, "'hidden' tap"),
    ],
)
def test_bundle_that_does_not_fit_the_model(bundle: Path, kwargs, words: str) -> None:
    with pytest.raises(BundleMismatchError, match=words):
        check_fits(read_metadata(bundle), source=str(bundle), **kwargs)
