"""Bundles that do not fit or are damaged, attached to a real (tiny) FluxPipeline: each refused with a
specific error, nothing written, the model unmodified (in addition to tests/unit/test_bundle.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import CALL, STEPS, edit_bundle_meta, expect_error

import lesa_core
from lesa_core.bundle import BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME
from lesa_core.errors import (
    BundleCorruptError,
    BundleMismatchError,
    BundleNotFoundError,
    ConfigError,
    ScheduleMismatchError,
)
from lesa_core.plugins import PluginHost

pytestmark = pytest.mark.integration


def _rehash(bundle: Path) -> None:
    """Make the recorded digest match the (edited) weights file: only the content checks remain."""
    meta = json.loads((bundle / BUNDLE_CONFIG_NAME).read_text())
    meta["weights_sha256"] = hashlib.sha256((bundle / BUNDLE_WEIGHTS_NAME).read_bytes()).hexdigest()
    (bundle / BUNDLE_CONFIG_NAME).write_text(json.dumps(meta))


def _edit_tensors(edit: Callable[[dict[str, torch.Tensor]], Any], rehash: bool = True) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(bundle / BUNDLE_WEIGHTS_NAME))
        edit(tensors)
        save_file(tensors, str(bundle / BUNDLE_WEIGHTS_NAME), metadata={"format": "pt"})
        if rehash:
            _rehash(bundle)

    return apply


def _edit_bytes(edit: Callable[[bytes], bytes], rehash: bool) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        weights = bundle / BUNDLE_WEIGHTS_NAME
        weights.write_bytes(edit(weights.read_bytes()))
        if rehash:
            _rehash(bundle)

    return apply


def _flip_last_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0xFF])


def _all_to(dtype: torch.dtype) -> Callable[[dict[str, torch.Tensor]], None]:
    def edit(tensors: dict[str, torch.Tensor]) -> None:
        for k in tensors:
            tensors[k] = tensors[k].to(dtype)

    return edit


def _nan_everywhere(tensors: dict[str, torch.Tensor]) -> None:
    for k in tensors:
        tensors[k] = torch.full_like(tensors[k], float("nan"))


# (case id, how to damage a copy of the bundle, error, words)
DAMAGED: list[tuple[str, Callable[[Path], None], type[Exception], list[str]]] = [
    ("weights-truncated", _edit_bytes(lambda b: b[: len(b) // 2], rehash=False), BundleCorruptError,
     ["truncated or was altered", "re-download or re-export"]),
    ("weights-truncated-digest-updated", _edit_bytes(lambda b: b[:-16], rehash=True), BundleCorruptError,
     ["not a readable safetensors"]),
    ("weights-empty-file", _edit_bytes(lambda b: b"", rehash=False), BundleCorruptError, ["truncated"]),
    ("weights-one-byte-flipped", _edit_bytes(_flip_last_byte, rehash=False), BundleCorruptError,
     ["does not match the digest"]),
    ("weights-header-length-corrupt", _edit_bytes(lambda b: (10**12).to_bytes(8, "little") + b[8:], rehash=True),
     BundleCorruptError, ["not a readable safetensors"]),
    ("weights-float16", _edit_tensors(_all_to(torch.float16)), BundleMismatchError, ["float16", "bundles store float32"]),
    ("weights-int32", _edit_tensors(_all_to(torch.int32)), BundleMismatchError, ["int32", "bundles store float32"]),
    ("weights-nan", _edit_tensors(_nan_everywhere), BundleCorruptError, ["NaN or infinite", "retrain"]),
    ("weights-key-renamed", _edit_tensors(lambda t: t.update({"renamed": t.pop(next(iter(t)))})),
     BundleMismatchError, ["missing keys", "unexpected keys ['renamed']"]),
    ("weights-file-missing", lambda b: (b / BUNDLE_WEIGHTS_NAME).unlink(), BundleNotFoundError,
     ["lesa_predictor.safetensors: missing", "re-export or re-download"]),
    ("metadata-file-missing", lambda b: (b / BUNDLE_CONFIG_NAME).unlink(), BundleNotFoundError,
     ["not a LESA bundle"]),
    ("metadata-not-json", lambda b: (b / BUNDLE_CONFIG_NAME).write_text("{\"run_config\": "), BundleCorruptError,
     ["unreadable JSON", "damaged"]),
    ("metadata-is-a-list", lambda b: (b / BUNDLE_CONFIG_NAME).write_text("[]"), BundleCorruptError,
     ["must be a JSON object"]),
    ("metadata-format-version-string", edit_bundle_meta(lambda m: m.update(format_version="1")), BundleCorruptError,
     ["format_version '1' is not supported"]),
    ("metadata-run-config-unknown-key", edit_bundle_meta(lambda m: m["run_config"].update(turbo=True)), BundleCorruptError,
     ["run_config is not a valid run config", "turbo", "re-export"]),
    ("metadata-run-config-taps-edited", edit_bundle_meta(lambda m: m["run_config"]["predictor"].update(taps=[2, 2, 2])),
     BundleMismatchError, ["has shape (3,) but the predictor expects (2,)"]),
    ("metadata-fingerprint-edited", edit_bundle_meta(lambda m: m.update(model_fingerprint="0" * 16)), BundleMismatchError,
     ["different config", "train a bundle for this model"]),
    ("metadata-model-class-edited", edit_bundle_meta(lambda m: m.update(model_class="diffusers.OtherModel")),
     BundleMismatchError, ["trained for diffusers.OtherModel"]),
    ("metadata-needs-missing-plugin", edit_bundle_meta(lambda m: m["run_config"]["predictor"].update(name="lesa_pro")),
     ConfigError, ["unknown predictor 'lesa_pro'", "lesa plugins"]),
]


@pytest.mark.parametrize(("case", "damage", "error", "words"), DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_bundle_is_refused(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                   kan_bundle: Path, tmp_path: Path, case: str, damage: Callable[[Path], None],
                                   error: type[Exception], words: list[str]) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(kan_bundle, bundle)
    damage(bundle)
    expect_error(case, "bundle", lambda: lesa_core.attach(flux_pipe, str(bundle), host=host), error, words,
                 folders=[tmp_path], model=flux_pipe.transformer, inputs=flux_inputs)


def _sample(pipe: Any, steps: int, **overrides: Any) -> torch.Tensor:
    out = pipe(prompt="a red circle", num_inference_steps=steps, output_type="latent",
               generator=torch.Generator().manual_seed(0), **{**CALL, **overrides})
    return out[0]


def test_wrong_model_class(host: PluginHost, kan_bundle: Path, tmp_path: Path) -> None:
    from lesa_core.testing.tiny import tiny_qwen_image_transformer, transformer_inputs

    qwen = tiny_qwen_image_transformer()
    expect_error("bundle-for-another-model-class", "bundle", lambda: lesa_core.attach(qwen, str(kan_bundle), host=host),
                 BundleMismatchError, ["trained for", "FluxTransformer2DModel", "QwenImageTransformer2DModel",
                                       "lesa train"], folders=[kan_bundle.parent], model=qwen,
                 inputs=transformer_inputs(qwen))


def test_same_class_other_config(host: PluginHost, kan_bundle: Path) -> None:
    from lesa_core.testing.tiny import tiny_flux_transformer, transformer_inputs

    other = tiny_flux_transformer(num_single_layers=2)
    expect_error("bundle-for-another-model-config", "bundle",
                 lambda: lesa_core.attach(other, str(kan_bundle), host=host), BundleMismatchError,
                 ["different config", "fingerprint"], folders=[kan_bundle.parent], model=other,
                 inputs=transformer_inputs(other))


def test_wrong_tap(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, kan_bundle: Path) -> None:
    expect_error("bundle-wrong-tap", "bundle",
                 lambda: lesa_core.attach(flux_pipe, {"bundle": str(kan_bundle), "tap": "output"}, host=host),
                 BundleMismatchError, ["'hidden' tap", "'output'", "drop the tap override"],
                 folders=[kan_bundle.parent], model=flux_pipe.transformer, inputs=flux_inputs)


def test_config_cannot_change_the_bundles_predictor(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost,
                                                   kan_bundle: Path) -> None:
    expect_error("bundle-predictor-overridden", "bundle",
                 lambda: lesa_core.attach(flux_pipe, {"bundle": str(kan_bundle), "predictor": "taylor"}, host=host),
                 ConfigError, ["cannot change it", "drop 'predictor'"], folders=[kan_bundle.parent],
                 model=flux_pipe.transformer, inputs=flux_inputs)


def test_missing_bundle_folder(flux_pipe: Any, flux_inputs: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    expect_error("bundle-folder-missing", "bundle",
                 lambda: lesa_core.attach(flux_pipe, str(tmp_path / "no-such-bundle"), host=host),
                 BundleNotFoundError, ["not found", "lesa train"], folders=[tmp_path], model=flux_pipe.transformer,
                 inputs=flux_inputs)


def test_schedule_bound_bundle_refuses_another_step_count(flux_pipe: Any, flux_inputs: dict[str, Any],
                                                          host: PluginHost, kan_bundle: Path) -> None:
    """The pipeline passes no step count: the first full step off the trained schedule refuses."""

    def run() -> None:
        with lesa_core.attach(flux_pipe, str(kan_bundle), host=host):
            _sample(flux_pipe, STEPS + 2)

    expect_error("schedule-bound-wrong-step-count", "bundle", run, ScheduleMismatchError,
                 [f"{STEPS}-step schedule", "sample with the step count"], folders=[kan_bundle.parent],
                 model=flux_pipe.transformer, inputs=flux_inputs)
    # and the pipeline still works afterwards, with LESA or without
    with lesa_core.attach(flux_pipe, str(kan_bundle), host=host) as handle:
        _sample(flux_pipe, STEPS)
        assert handle.stats()["cond"]["forecast_steps"] > 0


def test_schedule_bound_bundle_refuses_a_step_count_given_up_front(host: PluginHost, kan_bundle: Path,
                                                                   flux_pipe: Any) -> None:
    """A loop that says its step count (cache_context num_inference_steps) is refused at step 0."""
    from lesa_core.sampler import sample
    from lesa_core.testing.tiny import transformer_inputs

    model = flux_pipe.transformer
    inputs = transformer_inputs(model, height=4, width=4)
    noise = inputs.pop("hidden_states")
    inputs.pop("timestep")

    def run() -> None:
        with lesa_core.attach(model, str(kan_bundle), host=host):
            sample(model, noise, inputs, STEPS + 3)

    expect_error("schedule-bound-step-count-up-front", "bundle", run, ScheduleMismatchError,
                 [f"{STEPS}-step schedule", f"cannot run {STEPS + 3} steps", "time_encoding: relative"],
                 folders=[kan_bundle.parent], model=model, inputs=transformer_inputs(model, t=0.7))
