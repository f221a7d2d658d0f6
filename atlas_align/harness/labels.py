"""Feature labels of an atlas: feature id → human-readable label (+ score, source, validated)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from atlas_align.errors import ConfigError

LABELS_FILENAME = "labels.jsonl"


class FeatureLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: int
    label: str
    score: float | None = None
    source: str = "unknown"
    validated: bool = False


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class FeatureLabels:
    """A searchable table of feature labels (keyword search; case-insensitive)."""

    def __init__(self, labels: Iterable[FeatureLabel] = ()) -> None:
        self._by_feature: dict[int, FeatureLabel] = {}
        for item in labels:
            self._by_feature[item.feature] = item

    def __len__(self) -> int:
        return len(self._by_feature)

    def __iter__(self) -> Iterator[FeatureLabel]:
        return iter(sorted(self._by_feature.values(), key=lambda x: x.feature))

    def __getitem__(self, feature: int) -> FeatureLabel:
        return self._by_feature[feature]

    def get(self, feature: int) -> FeatureLabel | None:
        return self._by_feature.get(feature)

    def validated(self) -> list[FeatureLabel]:
        return [x for x in self if x.validated]

    def search(self, query: str, top_k: int = 10) -> list[tuple[FeatureLabel, float]]:
        """Labels matching the query words, best first: exact label > all words > some words."""
        q_words = _words(query)
        if not q_words:
            raise ConfigError("The search query is empty; give a word such as 'animal'.")
        q_norm = " ".join(q_words)
        hits: list[tuple[float, int, FeatureLabel]] = []
        for item in self._by_feature.values():
            words = _words(item.label)
            if not words:
                continue
            joined = " ".join(words)
            if joined == q_norm:
                score = 3.0
            else:
                matched = sum(any(w.startswith(q) or q.startswith(w) and len(w) > 3 for w in words) for q in q_words)
                if matched == 0:
                    continue
                score = 1.0 + matched / len(q_words) + (0.5 if q_norm in joined else 0.0)
            score += 0.25 * float(item.validated) + 0.01 * (item.score or 0.0)
            hits.append((score, -item.feature, item))
        hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
        return [(item, score) for score, _, item in hits[:top_k]]

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for item in self:
                handle.write(item.model_dump_json() + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureLabels:
        items = []
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        items.append(FeatureLabel.model_validate_json(line))
                    except ValueError as exc:
                        raise ConfigError(f"{path}:{lineno} is not a valid label row: {exc}") from None
        return cls(items)

    def to_rows(self) -> list[dict]:
        return [json.loads(item.model_dump_json()) for item in self]
