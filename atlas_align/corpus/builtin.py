"""The built-in default corpus: WordNet 3.0 glosses and examples labelled with their category.

The file is derived by ``scripts/derive_wordnet_corpus.py`` and ships inside the package, so the
demo needs nothing but pip. Each row is a dict with ``text``, ``category`` (a lexicographer file
name such as ``noun.animal``), ``synset`` (``"<offset>-<pos>"``), ``lemma``, ``hypernym``
(``"<offset>-<pos>"`` or ``None``) and ``kind`` (``"gloss"`` or ``"example"``).
WordNet 3.0 Copyright 2006 by Princeton University; see ``data/WORDNET_LICENSE.txt``.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources

CORPUS_FILENAME = "wordnet_corpus.jsonl.gz"
LICENSE_FILENAME = "WORDNET_LICENSE.txt"

# The 45 lexicographer files of lexnames(5), indexed by their number.
CATEGORIES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)  # fmt: skip


def load_default_corpus() -> list[dict]:
    """Return every row of the packaged WordNet corpus, in the file's fixed order."""
    data = resources.files("atlas_align") / "data" / CORPUS_FILENAME
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
