"""Feature labels of an atlas: feature id → human-readable label (+ score, source, validated)."""

from __future__ import annotations

import bisect
import heapq
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from atlas_align.errors import ConfigError
from atlas_align.files import atomic_write_text

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


class _KeywordIndex:
    """Inverted index over label words, so a query only scores labels that share a word (prefix) with it."""

    def __init__(self, items: Iterable[FeatureLabel]) -> None:
        self.entries: list[tuple[FeatureLabel, str]] = []  # (label, its words joined by spaces)
        self.postings: dict[str, list[int]] = {}
        for item in items:
            words = _words(item.label)
            if not words:
                continue
            for word in set(words):
                self.postings.setdefault(word, []).append(len(self.entries))
            self.entries.append((item, " ".join(words)))
        self.vocabulary = sorted(self.postings)

    def matching(self, q: str) -> set[int]:
        """Entries with a word w such that w.startswith(q), or q.startswith(w) and len(w) > 3."""
        found: set[int] = set()
        i = bisect.bisect_left(self.vocabulary, q)
        while i < len(self.vocabulary) and self.vocabulary[i].startswith(q):
            found.update(self.postings[self.vocabulary[i]])
            i += 1
        for end in range(4, len(q)):  # q's proper prefixes of 4+ characters (q itself is covered above)
            found.update(self.postings.get(q[:end], ()))
        return found


class FeatureLabels:
    """A searchable table of feature labels (keyword search; case-insensitive)."""

    def __init__(self, labels: Iterable[FeatureLabel] = ()) -> None:
        self._by_feature: dict[int, FeatureLabel] = {}
        for item in labels:
            self._by_feature[item.feature] = item
        self._index: _KeywordIndex | None = None  # built on the first search; the table never changes after __init__

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
        if self._index is None:
            self._index = _KeywordIndex(self._by_feature.values())
        matched: Counter[int] = Counter()  # entry -> how many query words it matches
        for q in q_words:
            matched.update(self._index.matching(q))
        hits: list[tuple[float, int, FeatureLabel]] = []
        for entry, count in matched.items():
            item, joined = self._index.entries[entry]
            score = 3.0 if joined == q_norm else 1.0 + count / len(q_words) + (0.5 if q_norm in joined else 0.0)
            score += 0.25 * float(item.validated) + 0.01 * (item.score or 0.0)
            hits.append((score, -item.feature, item))
        # (score, -feature) is unique per label, so nlargest orders exactly like a full sort
        best = heapq.nlargest(top_k, hits, key=lambda h: (h[0], h[1])) if top_k > 0 else sorted(hits, key=lambda h: (h[0], h[1]), reverse=True)[:top_k]
        return [(item, score) for score, _, item in best]

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        atomic_write_text(path, "".join(item.model_dump_json() + "\n" for item in self))

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

    @classmethod
    def from_neuronpedia(cls, source: str | Path | Iterable[dict], *, model_id: str | None = None, layer: str | None = None) -> FeatureLabels:
        """Labels from a Neuronpedia explanations export (a JSON list or JSONL file, or rows).

        Rows look like ``{"modelId": "gemma-2-2b", "layer": "20-gemmascope-res-16k", "index": "12082",
        "description": "references to dogs", "scores": [...]}``. ``model_id`` / ``layer`` keep only
        matching rows (an export can mix SAEs). With several explanations for one feature the
        best-scored one wins (the first one on ties).
        """
        rows = read_neuronpedia_rows(source) if isinstance(source, (str, Path)) else list(source)
        best: dict[int, FeatureLabel] = {}
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise ConfigError(f"Neuronpedia row {n} is a {type(row).__name__}, not an object.")
            if model_id is not None and row.get("modelId") != model_id:
                continue
            if layer is not None and row.get("layer") != layer:
                continue
            index, description = row.get("index"), row.get("description")
            try:
                feature = int(index)  # exports store the index as a string
            except (TypeError, ValueError):
                raise ConfigError(f"Neuronpedia row {n} has no integer 'index' (got {index!r}).") from None
            if not isinstance(description, str) or not description.strip():
                continue
            item = FeatureLabel(feature=feature, label=description.strip(), score=_neuronpedia_score(row.get("scores")), source="neuronpedia", validated=False)
            current = best.get(feature)
            if current is None or (item.score or float("-inf")) > (current.score or float("-inf")):
                best[feature] = item
        if not best:
            raise ConfigError("The Neuronpedia export held no usable explanation (rows need 'index' and 'description'; check model_id / layer).")
        return cls(best.values())


def read_neuronpedia_rows(path: str | Path) -> list[dict]:
    """Rows of a Neuronpedia export: a JSON list, or one JSON object per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read Neuronpedia export {path}: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        return list(rows)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{lineno} is not valid JSON ({exc.msg}).") from None
    return rows


def _neuronpedia_score(scores: object) -> float | None:
    """One number from an export's ``scores`` (numbers, or objects with a 'value' / 'score'): their mean."""
    if not isinstance(scores, list):
        return float(scores) if isinstance(scores, (int, float)) else None
    values = []
    for entry in scores:
        if isinstance(entry, (int, float)):
            values.append(float(entry))
        elif isinstance(entry, dict):
            value = entry.get("value", entry.get("score"))
            if isinstance(value, (int, float)):
                values.append(float(value))
    return sum(values) / len(values) if values else None
