"""Weights bundles: a folder with safetensors tensors and JSON metadata. No pickle anywhere.

Layout (the ``save_pretrained`` folder users know from the Hub)::

    my-bundle/
      lesa_bundle.json            # metadata: versions, plugins, model fingerprint, tap, schedule, config
      lesa_predictor.safetensors  # the predictor's state dict (float32)

Loading is strict: every key, shape and dtype must match the predictor built from the bundle's own
config, the weights file must hash to the digest recorded in the metadata, and the bundle must fit
the model (class and config fingerprint) and tap it is applied to. Every refusal names the
difference. Writes are atomic: a bundle folder appears complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from lesa_core.errors import (
    BundleCorruptError,
    BundleMismatchError,
    BundleNotFoundError,
    LesaError,
    OutputError,
)
from lesa_core.outputs import check_output_folder, check_writable, follow_umask
from lesa_core.parsing import DocumentError, parse_json, read_text, short_repr

BUNDLE_CONFIG_NAME = "lesa_bundle.json"
BUNDLE_WEIGHTS_NAME = "lesa_predictor.safetensors"
FORMAT_VERSION = 1

MAX_CHANNELS = 1 << 20
"""Largest tap channel count a bundle may record (real DiTs have a few thousand)."""

MAX_SCHEDULE_POINTS = 100_001
"""Longest schedule a bundle may record (S + 1 flow times)."""

MAX_STAGE_BOUNDARIES = 256
"""Most stage boundaries a bundle may record."""

MAX_HEADER_BYTES = 64 * 1024 * 1024
"""Largest safetensors header read (a predictor's header is a few KB)."""


def lesa_version() -> str:
    """The installed ``lesa-core`` version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lesa-core")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class BundleMetadata:
    """What ``lesa_bundle.json`` holds.

    :ivar run_config: the run config the predictor was trained with (``RunConfig.to_dict()``).
    :ivar plugins: per kind (``predictor``, ``router``, ``policy``, ``adapter``): name, distribution, version.
    :ivar model_class: fully qualified class of the transformer it was trained on.
    :ivar model_fingerprint: :meth:`BackboneAdapter.fingerprint` of that model.
    :ivar tap: the tap it forecasts.
    :ivar schedule: the S+1 flow times of the training trajectories (terminal 0 included), if any.
    :ivar stage_boundaries: the router's boundaries at training time.
    :ivar channels: size of the tap's last axis.
    :ivar weights_sha256: digest of the weights file.
    """

    run_config: dict[str, Any]
    plugins: dict[str, dict[str, Any]]
    model_class: str
    model_fingerprint: str
    tap: str
    schedule: list[float] | None
    stage_boundaries: list[float]
    channels: int | None
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION
    lesa_version: str = field(default_factory=lesa_version)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, source: str) -> BundleMetadata:
        if not isinstance(data, dict):
            raise BundleCorruptError(f"{source}: the metadata must be a JSON object; the file is not a LESA bundle's "
                                     "metadata — re-download or re-export the bundle")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleCorruptError(
                f"{source}: format_version {version!r} is not supported (this lesa reads {FORMAT_VERSION}); "
                "re-export the bundle with a matching lesa version"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        missing = [k for k in ("run_config", "plugins", "model_class", "model_fingerprint", "tap",
                               "schedule", "stage_boundaries", "channels", "weights_sha256") if k not in data]
        if unknown or missing:
            raise BundleCorruptError(
                f"{source}: metadata keys do not match a LESA bundle (unknown: {unknown or 'none'}, "
                f"missing: {missing or 'none'}); the file was edited or is not a LESA bundle — re-download or re-export it"
            )
        meta = cls(**data)
        _check_types(meta, source)
        return meta


def _numbers(values: Any, limit: int) -> bool:
    """A list of at most ``limit`` finite numbers (``bool`` is not a number here)."""
    return (isinstance(values, list) and len(values) <= limit
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values))


def _check_types(meta: BundleMetadata, source: str) -> None:
    """Types and sizes of every field, checked before anything is built from them."""
    checks = [
        (isinstance(meta.run_config, dict), "run_config must be an object"),
        (isinstance(meta.plugins, dict), "plugins must be an object"),
        (isinstance(meta.model_class, str), "model_class must be a string"),
        (isinstance(meta.model_fingerprint, str), "model_fingerprint must be a string"),
        (isinstance(meta.tap, str), "tap must be a string"),
        (meta.schedule is None or _numbers(meta.schedule, MAX_SCHEDULE_POINTS),
         f"schedule must be null or a list of at most {MAX_SCHEDULE_POINTS} finite numbers"),
        (_numbers(meta.stage_boundaries, MAX_STAGE_BOUNDARIES),
         f"stage_boundaries must be a list of at most {MAX_STAGE_BOUNDARIES} finite numbers"),
        (meta.channels is None or (type(meta.channels) is int and 1 <= meta.channels <= MAX_CHANNELS),
         f"channels must be null or an integer from 1 to {MAX_CHANNELS}"),
        (isinstance(meta.weights_sha256, str) and len(meta.weights_sha256) == 64
         and all(c in "0123456789abcdef" for c in meta.weights_sha256),
         "weights_sha256 must be a 64-character hex digest"),
        (isinstance(meta.extra, dict), "extra must be an object"),
    ]
    for ok, message in checks:
        if not ok:
            raise BundleCorruptError(f"{source}: tampered metadata: {message}; re-download or re-export the bundle")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


BUNDLE_FILES = frozenset({BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME})
"""The files a bundle folder holds (a folder holding anything else is not replaced)."""


def check_bundle_destination(path: str | Path) -> None:
    """Refuse a destination :func:`save_bundle` would not write: an existing file, a folder holding files
    LESA did not write (anything but a previous bundle's two files), or a path that cannot be written.

    :raises OutputError: saying what is there and what to do.
    """
    check_output_folder(path, markers={BUNDLE_CONFIG_NAME}, owned=BUNDLE_FILES, what="bundle")
    check_writable(path, what="bundle")


def save_bundle(path: str | Path, predictor: nn.Module, metadata: BundleMetadata) -> Path:
    """Write ``predictor``'s state dict and ``metadata`` to the folder ``path`` atomically.

    ``path`` must be new, an empty folder, or a previous bundle (which is replaced only once the new one is
    complete); the files follow the process umask.

    :raises OutputError: for any other destination (nothing is written), or when writing fails (a full
        disk: nothing is left behind, a previous bundle stays as it was).
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    check_bundle_destination(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in predictor.state_dict().items()}
        weights = tmp / BUNDLE_WEIGHTS_NAME
        save_file(tensors, str(weights), metadata={"format": "pt"})  # one key: byte-stable headers
        meta = dict(asdict(metadata), weights_sha256=_sha256(weights))
        (tmp / BUNDLE_CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        follow_umask(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "bundle")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"could not write the bundle '{path}' ({reason}); nothing was written — free some "
                          "disk space or choose another folder, then run again (collected trajectories and "
                          "checkpoints are kept)") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def resolve_bundle_path(name_or_path: str | Path) -> Path:
    """A local bundle folder, or a Hub repo id resolved with ``huggingface_hub`` (when online).

    :raises BundleNotFoundError: if neither works.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    text = str(name_or_path)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise BundleNotFoundError(
            f"bundle '{text}' not found: pass a folder containing {BUNDLE_CONFIG_NAME} and {BUNDLE_WEIGHTS_NAME} "
            "(as written by `lesa train`) or a Hub repo id 'owner/name'"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=[BUNDLE_CONFIG_NAME, BUNDLE_WEIGHTS_NAME]))
    except Exception as exc:
        raise BundleNotFoundError(
            f"bundle '{text}' is not a local folder and could not be fetched from the Hub ({type(exc).__name__}: "
            f"{exc}); check the path, or download it first when offline"
        ) from None


def is_bundle(path: str | Path) -> bool:
    """``True`` if ``path`` is a folder holding a bundle metadata file."""
    return (Path(path) / BUNDLE_CONFIG_NAME).is_file()


def read_metadata(path: str | Path) -> BundleMetadata:
    """Read and check ``lesa_bundle.json`` of the bundle folder ``path``.

    :raises BundleNotFoundError: if the folder or file is missing.
    :raises BundleCorruptError: if the JSON is damaged, tampered with or of another format version.
    """
    folder = Path(path)
    meta_path = folder / BUNDLE_CONFIG_NAME
    if not meta_path.is_file():
        raise BundleNotFoundError(f"{folder}: no {BUNDLE_CONFIG_NAME}; this folder is not a LESA bundle — pass the "
                                  "folder that `lesa train --out` wrote")
    try:
        data = parse_json(read_text(meta_path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError, DocumentError
        kind = "refused" if isinstance(exc, DocumentError) else "unreadable JSON"
        raise BundleCorruptError(f"{meta_path}: {kind} ({exc}); the file is damaged or is not a LESA bundle's "
                                 "metadata — re-download or re-export the bundle") from None
    return BundleMetadata.from_json(data, str(meta_path))


def _weights_file(path: str | Path, metadata: BundleMetadata) -> Path:
    """The bundle's weights file, checked against the digest its metadata records."""
    weights = Path(path) / BUNDLE_WEIGHTS_NAME
    if not weights.is_file():
        raise BundleNotFoundError(f"{weights}: missing; the bundle is incomplete, re-export or re-download it")
    digest = _sha256(weights)
    if digest != metadata.weights_sha256:
        raise BundleCorruptError(
            f"{weights}: content does not match the digest in {BUNDLE_CONFIG_NAME} "
            f"(expected {metadata.weights_sha256[:12]}…, found {digest[:12]}…); the file is truncated or was "
            "altered — re-download or re-export the bundle"
        )
    return weights


def _header_shapes(weights: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name → (shape, safetensors dtype) from the weights file's header, without reading the tensors."""
    damaged = (f"{weights}: not a readable safetensors file (damaged header); the file is damaged — "
               "re-download or re-export the bundle")
    with weights.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise BundleCorruptError(damaged)
        (size,) = struct.unpack("<Q", prefix)
        if size > MAX_HEADER_BYTES:
            raise BundleCorruptError(damaged)
        raw = fh.read(size)
    try:
        header = parse_json(raw.decode("utf-8"))
        return {name: (tuple(int(d) for d in entry["shape"]), str(entry["dtype"]))
                for name, entry in header.items() if name != "__metadata__"}
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise BundleCorruptError(damaged) from None


def _check_state_fits(weights: Path, expected: dict[str, tuple[int, ...]],
                      found: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Refuse weights whose keys, shapes or dtypes (float32 only) differ from the predictor's."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(found) if expected[k] != found[k][0])
    wrong_dtype = sorted(k for k in set(expected) & set(found) if k not in wrong_shape and found[k][1] != "F32")
    if not (missing or unexpected or wrong_shape or wrong_dtype):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {missing[:5]}{'…' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    for k in wrong_shape[:5]:
        parts.append(f"'{k}' has shape {found[k][0]} but the predictor expects {expected[k]}")
    for k in wrong_dtype[:5]:
        parts.append(f"'{k}' is {_DTYPE_NAMES.get(found[k][1], found[k][1])}, bundles store float32")
    raise BundleMismatchError(
        f"{weights}: the weights do not fit the predictor built from the bundle's config: "
        + "; ".join(parts) + ". The bundle was written by an incompatible predictor version or edited: "
        "re-export it with the installed predictor version, or train a new bundle"
    )


_DTYPE_NAMES = {"F16": "torch.float16", "BF16": "torch.bfloat16", "F64": "torch.float64", "I32": "torch.int32",
                "I64": "torch.int64", "I8": "torch.int8", "U8": "torch.uint8", "BOOL": "torch.bool"}


def load_weights(path: str | Path, predictor: nn.Module, metadata: BundleMetadata) -> None:
    """Load the bundle's weights into ``predictor`` strictly (keys, shapes, dtypes, digest).

    :raises BundleCorruptError: if the file is missing, truncated, altered, unparsable or holds
        non-finite values.
    :raises BundleMismatchError: if keys, shapes or dtypes differ from ``predictor``'s, listing them.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = _weights_file(path, metadata)
    expected = predictor.state_dict()
    _check_state_fits(weights, {k: tuple(v.shape) for k, v in expected.items()}, _header_shapes(weights))
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleCorruptError(f"{weights}: not a readable safetensors file ({exc}); the file is damaged — "
                                 "re-download or re-export the bundle") from None
    non_finite = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if non_finite:
        raise BundleCorruptError(
            f"{weights}: {len(non_finite)} tensor(s) hold NaN or infinite values (e.g. '{non_finite[0]}'); the "
            "training diverged or the file was altered — retrain (e.g. with a lower learning rate) or re-export"
        )
    with torch.no_grad():
        for k, target in expected.items():
            target.copy_(tensors[k].to(target.dtype))


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def build_and_load(path: str | Path, metadata: BundleMetadata, build: Callable[[], ModuleT]) -> ModuleT:
    """Build the predictor a bundle's weights go into and load them strictly — building it first on the
    ``meta`` device (no memory), so that a predictor that would not fit the weights file (metadata damaged
    or edited to ask for huge sizes) is refused *before* anything is allocated.

    A family that cannot be built on the meta device is built for real and checked by :func:`load_weights`.

    :raises BundleMismatchError: / :raises BundleCorruptError: as :func:`load_weights`.
    """
    weights = _weights_file(path, metadata)
    found = _header_shapes(weights)
    try:
        with torch.device("meta"):
            probe = build()
    except LesaError:
        raise
    except Exception:  # e.g. an initialisation that reads values (``.item()``): checked after building
        probe = None
    if probe is not None:
        _check_state_fits(weights, {k: tuple(v.shape) for k, v in probe.state_dict().items()}, found)
    try:
        predictor = build()
    except LesaError:
        raise
    except Exception as exc:  # sizes a family cannot build (an edited config the meta build could not check)
        raise BundleCorruptError(
            f"{Path(path) / BUNDLE_CONFIG_NAME}: the predictor cannot be built from the stored run config "
            f"({type(exc).__name__}: {short_repr(str(exc))}); the metadata was edited or written by another "
            "predictor version — re-export or re-download the bundle") from None
    load_weights(path, predictor, metadata)
    return predictor


def check_fits(metadata: BundleMetadata, *, model_class: str, fingerprint: str, tap: str, source: str) -> None:
    """Refuse a bundle trained for another model class, model config or tap.

    :raises BundleMismatchError: naming the difference.
    """
    if metadata.model_class != model_class:
        raise BundleMismatchError(
            f"{source}: the bundle was trained for {metadata.model_class}, not {model_class}; "
            "train a bundle for this model with `lesa train`"
        )
    if metadata.model_fingerprint != fingerprint:
        raise BundleMismatchError(
            f"{source}: the bundle was trained on a {metadata.model_class} with a different config "
            f"(fingerprint {metadata.model_fingerprint} vs {fingerprint} for this model); its forecasts would "
            "not match this model's features — train a bundle for this model with `lesa train`"
        )
    if metadata.tap != tap:
        raise BundleMismatchError(
            f"{source}: the bundle forecasts the '{metadata.tap}' tap but the run asks for '{tap}'; "
            f"drop the tap override or set tap: {metadata.tap}"
        )
