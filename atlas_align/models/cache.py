"""Pooled activations cached on disk, content-addressed, so re-fitting or re-evaluating never re-runs a model.

The key is a sha256 over what determines the numbers: the space's identity (model id, revision,
hookpoint, pooling rule, max length, dtype — or the atlas id and revision) and the exact texts in
order. Entries are safetensors written atomically; a corrupt or foreign file is recomputed, never
trusted. Enable it with ``ATLAS_ALIGN_ACTIVATION_CACHE=DIR`` (or pass a cache explicitly).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from atlas_align.files import atomic_path, texts_fingerprint

CACHE_ENV = "ATLAS_ALIGN_ACTIVATION_CACHE"
FORMAT = "atlas-align/pooled-activations/1"


class ActivationCache:
    """A folder of ``<key>.safetensors`` files, one per (space identity, text list)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.hits = self.misses = 0

    @classmethod
    def from_env(cls) -> ActivationCache | None:
        root = os.environ.get(CACHE_ENV)
        return cls(root) if root else None

    def key(self, identity: Mapping[str, Any], texts: list[str]) -> str:
        blob = json.dumps({"format": FORMAT, "identity": dict(identity), "texts": texts_fingerprint(texts), "n": len(texts)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> torch.Tensor | None:
        path = self.root / f"{key}.safetensors"
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("key") != key:
                    return None
                tensor = handle.get_tensor("pooled")
        except Exception:  # a truncated or foreign file: recompute
            return None
        return tensor if torch.isfinite(tensor).all() else None

    def put(self, key: str, pooled: torch.Tensor) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / f"{key}.safetensors") as tmp:
            save_file({"pooled": pooled.contiguous()}, str(tmp), metadata={"key": key, "format": FORMAT})

    def pooled(self, space, identity: Mapping[str, Any], texts: list[str]) -> torch.Tensor:
        """``torch.cat(space.pooled_batches(texts))``, from disk when this exact computation ran before."""
        key = self.key(identity, texts)
        cached = self.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        parts = list(space.pooled_batches(texts))
        pooled = torch.cat(parts) if parts else torch.empty(0, getattr(space, "width", 0))
        if torch.isfinite(pooled).all():  # never cache what the fit would refuse
            self.put(key, pooled)
        return pooled


class CachedSpace:
    """Anything with ``pooled_batches`` (an extractor, an atlas space), answered from an :class:`ActivationCache`.

    Other attributes (``width``, ``ref``, ``labels``, ``model`` ...) pass through to the wrapped space.
    """

    def __init__(self, inner, identity: Mapping[str, Any], cache: ActivationCache) -> None:
        self.inner = inner
        self.identity = dict(identity)
        self.cache = cache

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        yield self.cache.pooled(self.inner, self.identity, list(texts))

    def pooled(self, texts: list[str]) -> torch.Tensor:
        return self.cache.pooled(self.inner, self.identity, list(texts))


def subject_identity(model_id: str, hookpoint: str, pooling, max_length: int, dtype: str = "float32") -> dict[str, Any]:
    """What determines a subject model's pooled activations (the cache key's identity part)."""
    return {
        "kind": "subject", "model_id": model_id, "hookpoint": hookpoint, "max_length": max_length, "dtype": dtype,
        "pooling": pooling.model_dump(mode="json") if hasattr(pooling, "model_dump") else pooling,
    }  # fmt: skip


def atlas_identity(atlas_id: str, revision: str | None, max_length: int) -> dict[str, Any]:
    """What determines an atlas space's pooled activations (its own model, SAE and pooling are fixed by the atlas)."""
    return {"kind": "atlas", "atlas_id": atlas_id, "revision": revision, "max_length": max_length}
