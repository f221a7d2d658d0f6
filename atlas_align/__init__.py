"""atlas-align: make any model interpretable through a labelled Concept Atlas (arXiv 2510.27413)."""

from atlas_align.alignment import AtlasAlignment, SearchResult
from atlas_align.errors import AtlasAlignError
from atlas_align.harness.corpus import CorpusConfig
from atlas_align.harness.labels import FeatureLabels
from atlas_align.harness.statistics import AlignmentStatistics
from atlas_align.pipeline import AlignRequest, run_alignment
from atlas_align.registry.artifact import AlignmentConfig

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
