"""Shared-input corpus: the identical texts both models read.

Texts are chunked at *word* boundaries (never tokens) so that the atlas model and the subject
model see the same characters whatever their tokenizers. A ``.txt`` file gives one text per
blank-line paragraph (``text_unit="paragraph"``, the default), per non-empty line (``"line"``: one
sentence per line), or the whole file as one stream (``"window"``); every text is then cut into
windows of at most ``window_words`` words. The train / held-out split is decided by
hashing each window's text, so it is deterministic, independent of order and of N.

Sampling is uniform by default: asking for N windows returns the N whose seeded hash is smallest
(bottom-k sampling: one streaming pass, memory O(N), the same result for the same seed), in hash
order — so a corpus stored sorted by topic (the built-in WordNet one is sorted by category) gives
a sample of every topic, and neighbouring samples are unrelated. ``sampling="sequential"`` takes
the first N windows in file order (the old behaviour).
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from atlas_align.errors import CorpusError
from atlas_align.refs import looks_like_repo_id

BUILTIN = "builtin"
Split = Literal["train", "heldout", "all"]
Sampling = Literal["uniform", "sequential"]
TextUnit = Literal["paragraph", "line", "window"]


class CorpusConfig(BaseModel):
    """Where the shared texts come from and how they are cut."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(BUILTIN, description="'builtin', a local .txt/.jsonl(.gz) file or folder, or a HF dataset id")
    text_field: str = "text"
    text_unit: TextUnit = Field(
        "paragraph",
        description="how a .txt file becomes texts: 'paragraph' (blank-line separated), 'line' (one per non-empty line) "
        "or 'window' (the whole file cut into windows of window_words); every text is then cut at window_words",
    )
    window_words: int = Field(48, ge=4, le=4096)
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_salt: str = "atlas-align-v1"
    dataset_split: str = "train"
    sampling: Sampling = Field("uniform", description="'uniform': a seeded uniform sample of the whole corpus (one pass); 'sequential': the first N windows")
    sample_seed: int = Field(0, description="seed of the uniform sample")
    scan_limit: int | None = Field(None, gt=0, description="uniform sampling reads at most this many windows (None: the whole corpus; set it for huge streamed datasets)")


class Sample(BaseModel):
    """One shared input window (with its ground-truth concept category when the corpus has one)."""

    model_config = ConfigDict(frozen=True)

    text: str
    category: str | None = None


def _unit_hash(text: str, salt: str) -> float:
    """A keyed hash of ``text`` mapped to [0, 1)."""
    digest = hashlib.blake2b(text.encode("utf-8"), key=salt.encode("utf-8")[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(text: str, heldout_fraction: float, salt: str = "atlas-align-v1") -> Literal["train", "heldout"]:
    """Deterministic split: a keyed hash of the text, so the same window always lands on the same side."""
    return "heldout" if _unit_hash(text, salt) < heldout_fraction else "train"


def chunk_words(text: str, window_words: int) -> list[str]:
    """Cut a text into windows of at most ``window_words`` whitespace-separated words."""
    words = text.split()
    return [" ".join(words[i : i + window_words]) for i in range(0, len(words), window_words)]


def _rows_from_file(path: Path, text_field: str, text_unit: TextUnit = "paragraph") -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    stem_suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    with opener(path, "rt", encoding="utf-8") as handle:
        if stem_suffix == ".jsonl":
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path}:{lineno} is not valid JSON ({exc.msg}); fix or remove that line.") from None
                if text_field not in row:
                    raise CorpusError(
                        f"{path}:{lineno} has no {text_field!r} field (keys: {sorted(row)}); "
                        f"pass --text-field with the right key."
                    )
                yield row
        elif text_unit == "line":  # plain text: one document per non-empty line
            for line in handle:
                if line.strip():
                    yield {text_field: line.strip()}
        elif text_unit == "window":  # plain text: the whole file, cut into windows downstream
            yield {text_field: handle.read()}
        else:  # plain text: one document per blank-line-separated paragraph
            paragraph: list[str] = []
            for line in handle:
                if line.strip():
                    paragraph.append(line.strip())
                elif paragraph:
                    yield {text_field: " ".join(paragraph)}
                    paragraph = []
            if paragraph:
                yield {text_field: " ".join(paragraph)}


def _iter_rows(cfg: CorpusConfig) -> Iterator[dict]:
    if cfg.source == BUILTIN:
        from atlas_align.corpus.builtin import load_default_corpus

        yield from load_default_corpus()
        return
    path = Path(cfg.source).expanduser()
    if path.is_file():
        yield from _rows_from_file(path, cfg.text_field, cfg.text_unit)
        return
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".txt", ".jsonl", ".jsonl.gz", ".txt.gz")))
        if not files:
            raise CorpusError(f"Folder {path} holds no .txt or .jsonl files; put your texts there or pass another --corpus.")
        for file in files:
            yield from _rows_from_file(file, cfg.text_field, cfg.text_unit)
        return
    if looks_like_repo_id(cfg.source):
        yield from _iter_hf_dataset(cfg)
        return
    raise CorpusError(
        f"Corpus {cfg.source!r} is neither 'builtin', an existing file or folder, nor a Hugging Face dataset id "
        f"('org/name'). Check the path."
    )


def _iter_hf_dataset(cfg: CorpusConfig) -> Iterator[dict]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets ships with sae-lens
        raise CorpusError("Reading a Hub dataset needs the 'datasets' package: pip install datasets") from None
    try:
        stream = datasets.load_dataset(cfg.source, split=cfg.dataset_split, streaming=True)
    except Exception as exc:  # network / missing dataset: say what to do
        raise CorpusError(
            f"Could not open Hugging Face dataset {cfg.source!r} ({type(exc).__name__}: {exc}). "
            f"Offline? Use a local file or folder with --corpus, or the built-in corpus."
        ) from None
    for row in stream:
        if cfg.text_field not in row:
            raise CorpusError(f"Dataset {cfg.source!r} rows have no {cfg.text_field!r} field (keys: {sorted(row)}).")
        yield row


def iter_samples(cfg: CorpusConfig, split: Split = "train", limit: int | None = None) -> Iterator[Sample]:
    """Windows of the corpus filtered to ``split``: a uniform sample of ``limit`` of them (the default), or all.

    With ``limit`` and ``cfg.sampling == "uniform"`` this reads the corpus once (up to
    ``cfg.scan_limit`` windows), keeps the ``limit`` windows with the smallest seeded hash and
    yields them in hash order. Without ``limit`` (or with ``sampling="sequential"``) it streams
    windows in corpus order, nothing materialised.
    """
    if limit is not None and cfg.sampling == "uniform":
        yield from _uniform_sample(cfg, split, limit)
        return
    produced = 0
    for sample in _iter_windows(cfg, split):
        yield sample
        produced += 1
        if limit is not None and produced >= limit:
            return


def _iter_windows(cfg: CorpusConfig, split: Split) -> Iterator[Sample]:
    seen_any = False
    for row in _iter_rows(cfg):
        text = row.get(cfg.text_field)
        if not isinstance(text, str):
            continue
        category = row.get("category")
        for window in chunk_words(text, cfg.window_words):
            seen_any = True
            if split != "all" and split_of(window, cfg.heldout_fraction, cfg.split_salt) != split:
                continue
            yield Sample(text=window, category=category)
    if not seen_any:
        raise CorpusError(f"Corpus {cfg.source!r} yielded no text; check --text-field ({cfg.text_field!r}) and the files.")


def sample_key(cfg: CorpusConfig) -> str:
    """The hash key of the uniform sample (independent of the split's key, so the sample is uniform within a split)."""
    return f"{cfg.split_salt}/sample/{cfg.sample_seed}"


def _uniform_sample(cfg: CorpusConfig, split: Split, limit: int) -> Iterator[Sample]:
    if limit <= 0:
        return
    key = sample_key(cfg)
    heap: list[tuple[float, int, Sample]] = []  # max-heap of the `limit` smallest hashes (negated)
    for index, sample in enumerate(_iter_windows(cfg, split)):
        if cfg.scan_limit is not None and index >= cfg.scan_limit:
            break
        item = (-_unit_hash(sample.text, key), -index, sample)
        if len(heap) < limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    for _, _, sample in sorted(heap, key=lambda t: (-t[0], -t[1])):
        yield sample


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Group an iterable into lists of ``size`` (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
