"""The alignment artifact format: file names, the typed config, and checksummed safetensors I/O.

An artifact is a folder (or Hub repo) holding ``model.safetensors`` (T and friends, provenance in
the safetensors string header), ``config.json`` (:class:`AlignmentConfig`, with the sha256 of
the weights file), ``README.md`` (the card) and optional ``atlas_labels.jsonl`` /
``eval_results.json``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open
from safetensors.torch import save_file

from atlas_align.errors import IntegrityError, ShapeMismatchError
from atlas_align.files import CONFIG_FILENAME, WEIGHTS_FILENAME, atomic_path, atomic_write_text, sha256_file
from atlas_align.refs import AtlasRef, CorpusRef, PoolingConfig, SubjectRef, library_version

FORMAT_VERSION = 1
TENSOR_NAMES = ("T", "subject_shift", "subject_scale")


class AlignmentConfig(BaseModel):
    """Everything needed to reproduce and check an alignment (config.json)."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    kind: Literal["atlas-align/alignment"] = "atlas-align/alignment"
    subject: SubjectRef
    atlas: AtlasRef
    method: str
    method_params: dict[str, Any] = Field(default_factory=dict)
    row_normalize: bool = True
    corpus: CorpusRef | None = None
    # How texts were pooled (subject, and raw-model atlases); artifacts from before the option existed used legacy pooling.
    pooling: PoolingConfig = Field(default_factory=PoolingConfig.legacy)
    # Fitted on one row per shared word (models.spans units, pooled 'max' or 'mean') instead of one per text; None = per text.
    unit_pooling: Literal["max", "mean"] | None = None
    d_s: int = Field(gt=0)
    d_c: int = Field(gt=0)
    library_version: str = Field(default_factory=library_version)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    weights_sha256: str | None = None


def check_weights(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights that can only translate to nonsense: NaN/inf anywhere, an all-zero T, a zero scale.

    A NaN T ranks every retrieval query first and an all-zero T ties every score, so neither may
    be saved, loaded or scored.
    """
    for name in TENSOR_NAMES:
        if name not in tensors:
            continue
        tensor = tensors[name]
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise IntegrityError(
                f"{where}: tensor {name!r} holds {bad} NaN/inf values (of {tensor.numel()}); this alignment is broken. "
                f"Re-run the alignment (its statistics or activations overflowed)."
            )
    if "T" in tensors and not bool(tensors["T"].any()):
        raise IntegrityError(f"{where}: T is all zeros, so every translated score ties; re-run the alignment.")
    if "subject_scale" in tensors and bool((tensors["subject_scale"] == 0).any()):
        raise IntegrityError(f"{where}: subject_scale has zeros, which would divide by zero; re-run the alignment.")


def write_weights(directory: Path, tensors: dict[str, torch.Tensor], config: AlignmentConfig) -> str:
    """Write model.safetensors atomically with provenance in its header; returns its sha256."""
    path = directory / WEIGHTS_FILENAME
    check_weights({k: v.detach().to(torch.float32) for k, v in tensors.items()}, f"Refusing to write {path}")
    metadata = {
        "format": "pt",
        "atlas_align_format_version": str(FORMAT_VERSION),
        "subject_model": config.subject.model_id,
        "hookpoint": config.subject.hookpoint,
        "atlas": config.atlas.atlas_id,
        "method": config.method,
        "library_version": config.library_version,
    }
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return sha256_file(path)


def write_config(directory: Path, config: AlignmentConfig) -> None:
    atomic_write_text(directory / CONFIG_FILENAME, json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def read_config(path: str | Path) -> AlignmentConfig:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"Cannot read alignment config {path}: {exc}") from None
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"{path} has format_version {version!r}; this atlas-align reads version {FORMAT_VERSION}. "
            f"Upgrade atlas-align (pip install -U atlas-align) or re-run the alignment."
        )
    try:
        return AlignmentConfig.model_validate(raw)
    except ValueError as exc:
        raise IntegrityError(f"{path} is not a valid alignment config:\n{exc}") from None


def read_weights(path: str | Path, config: AlignmentConfig) -> dict[str, torch.Tensor]:
    """Load the weights after checking the recorded sha256 and every tensor's shape."""
    if config.weights_sha256 is not None:
        actual = sha256_file(path)
        if actual != config.weights_sha256:
            raise IntegrityError(
                f"{path} has sha256 {actual[:12]}… but config.json records {config.weights_sha256[:12]}…: the weights "
                f"were modified or corrupted. Re-download (force_download=True) or re-run the alignment."
            )
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own types on corrupt files
        raise IntegrityError(f"{path} is not a valid safetensors file ({exc}).") from None
    expected = {"T": (config.d_s, config.d_c), "subject_shift": (config.d_s,), "subject_scale": (config.d_s,)}
    for name, shape in expected.items():
        if name not in tensors:
            raise IntegrityError(f"{path} lacks tensor {name!r}.")
        if tuple(tensors[name].shape) != shape:
            raise ShapeMismatchError(f"Tensor {name!r} in {path} has shape {tuple(tensors[name].shape)}, config says {shape}.")
    check_weights(tensors, f"Refusing to load {path}")
    return tensors
