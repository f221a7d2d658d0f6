"""atlas-align: make any model interpretable through a labelled Concept Atlas (arXiv 2510.27413).

Names are imported lazily so that light entry points (the registry server, ``--help``) do not pay
for torch and transformers. The two functions below are the front door for a model you hold:
:func:`load_model` loads one, :func:`extract_pooled` reads its pooled activations at a layer — the
``(N, d_s)`` input of ``AtlasAlignment.translate_to_atlas``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AlignRequest": "atlas_align.alignment.pipeline",
    "AlignmentConfig": "atlas_align.alignment.artifact",
    "AlignmentStatistics": "atlas_align.fit.statistics",
    "AtlasAlignError": "atlas_align.errors",
    "AtlasAlignment": "atlas_align.alignment.model",
    "CorpusConfig": "atlas_align.corpus.sources",
    "FeatureLabels": "atlas_align.atlas.labels",
    "SearchResult": "atlas_align.alignment.model",
    "run_alignment": "atlas_align.alignment.pipeline",
}
__all__ = [
    "AlignRequest",
    "AlignmentConfig",
    "AlignmentStatistics",
    "AtlasAlignError",
    "AtlasAlignment",
    "CorpusConfig",
    "FeatureLabels",
    "SearchResult",
    "extract_pooled",
    "load_model",
    "run_alignment",
]

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from atlas_align.alignment.artifact import AlignmentConfig
    from atlas_align.alignment.model import AtlasAlignment, SearchResult
    from atlas_align.alignment.pipeline import AlignRequest, run_alignment
    from atlas_align.atlas.labels import FeatureLabels
    from atlas_align.corpus.sources import CorpusConfig
    from atlas_align.errors import AtlasAlignError
    from atlas_align.fit.statistics import AlignmentStatistics


def load_model(name: str, dtype: str = "float32") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for an offline alias (``"smollm2"``, ``"minilm"``, ``"mpnet"``), a local
    folder or a Hub id; the model is in eval mode. ``dtype``: ``"float32"`` or ``"bfloat16"``."""
    from atlas_align.models.loading import load_subject

    model, tokenizer, _ = load_subject(name, dtype)
    return model, tokenizer


def extract_pooled(
    model: Any, tokenizer: Any, texts: Sequence[str], layer: int | None = None, *, hookpoint: str | None = None,
    site: str = "resid", batch_size: int = 16, max_length: int = 128, **extractor_kwargs: Any,
) -> torch.Tensor:
    """Max-pooled activations ``(len(texts), d)`` (float32, CPU) of ``model`` at one layer.

    ``layer`` is a block index (negative counts from the end) read at ``site`` (``"resid"`` or
    ``"mlp"``); ``hookpoint`` — a module path relative to ``model.base_model`` such as
    ``alignment.config.subject.hookpoint`` — overrides it. Padding and special tokens are not
    pooled; the forward pass stops at the hooked layer. Further keyword arguments go to
    :class:`atlas_align.models.activations.ActivationExtractor`.
    """
    from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint

    if layer is None and hookpoint is None:
        raise TypeError("extract_pooled needs layer= or hookpoint= (e.g. alignment.config.subject.hookpoint).")
    hook = resolve_hookpoint(model, layer, site, hookpoint)  # type: ignore[arg-type]
    extractor = ActivationExtractor(model, tokenizer, hook, batch_size=batch_size, max_length=max_length, **extractor_kwargs)
    return extractor.pooled(list(texts))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas_align' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
