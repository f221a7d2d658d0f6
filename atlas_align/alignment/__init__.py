"""Stage 5 — the alignment: :class:`AtlasAlignment` (search / explain / steer), its artifact format and card, and the align workflow."""

from atlas_align.alignment.model import AtlasAlignment, SearchResult

__all__ = ["AtlasAlignment", "SearchResult"]
