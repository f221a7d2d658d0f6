"""atlas-align: make any model interpretable through a labelled Concept Atlas (arXiv 2510.27413).

Names are imported lazily so that light entry points (the registry server, ``--help``) do not pay
for torch and transformers.
"""

from __future__ import annotations

import importlib
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
    "run_alignment",
]

if TYPE_CHECKING:  # pragma: no cover
    from atlas_align.alignment.artifact import AlignmentConfig
    from atlas_align.alignment.model import AtlasAlignment, SearchResult
    from atlas_align.alignment.pipeline import AlignRequest, run_alignment
    from atlas_align.atlas.labels import FeatureLabels
    from atlas_align.corpus.sources import CorpusConfig
    from atlas_align.errors import AtlasAlignError
    from atlas_align.fit.statistics import AlignmentStatistics


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas_align' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
