"""What every benchmark shares: the registry, the typed result with its provenance, the context.

A benchmark is named ``name@version``; a result records the harness version and git sha, a hash
of the benchmark's config, the subject/atlas/artifact revisions and a fingerprint of the held-out
texts it used, so two results compare only when all of those say they may.
Results hold no timestamps: the same inputs and seed give the same result, to the bit.

Version 2 of every benchmark (translation, retrieval, steering): the held-out texts are a uniform
sample of the whole corpus (v1 read the first windows of a category-sorted corpus), ties and NaN
rank against the relevant item, and subjects pool without the attention sink. v1 and v2 results
never share a leaderboard column.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import Sample
from atlas_align.errors import ConfigError
from atlas_align.files import texts_fingerprint
from atlas_align.plugins import Registry
from atlas_align.refs import library_version

RESULT_FORMAT_VERSION = 1


class NotApplicable(ConfigError):
    """A benchmark does not apply to this alignment (e.g. retrieval on an unlabelled raw-layer atlas); the message says why.

    ``evaluate`` skips such a benchmark and reports the reason instead of failing the whole run.
    """


class Provenance(BaseModel):
    """Where a result came from; everything needed to decide whether two results are comparable."""

    model_config = ConfigDict(extra="forbid")

    harness_version: str
    git_sha: str | None = None
    subject_model: str
    subject_revision: str | None = None
    hookpoint: str
    atlas_id: str
    atlas_revision: str | None = None
    artifact_revision: str | None = Field(None, description="Hub commit sha, else the weights' sha256")
    heldout_fingerprint: str = Field(description="sha256 over the held-out texts used, in order")
    n_heldout: int
    seed: int


class BenchmarkResult(BaseModel):
    """One benchmark run. ``controls`` and ``chance`` hold the reference value of each metric."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = RESULT_FORMAT_VERSION
    benchmark: str = Field(description="name@version, e.g. 'translation@2'")
    metrics: dict[str, float]
    controls: dict[str, float] = Field(default_factory=dict, description="same metric for the control (shuffled T)")
    chance: dict[str, float] = Field(default_factory=dict)
    details: list[dict[str, Any]] = Field(default_factory=list, description="per-feature / per-concept rows")
    table: list[dict[str, Any]] = Field(default_factory=list, description="human-readable rows (steering)")
    config: dict[str, Any]
    config_hash: str
    provenance: Provenance

    @property
    def name(self) -> str:
        return self.benchmark.split("@")[0]

    @property
    def version(self) -> int:
        return int(self.benchmark.split("@")[1])

    def metric_rows(self) -> list[dict[str, Any]]:
        """Rows {benchmark, name, value, control} for the model card."""
        rows = []
        for key, value in self.metrics.items():
            parts = []
            if key in self.controls:
                parts.append(f"{self.controls[key]:.4f} (shuffled T)")
            if key in self.chance:
                parts.append(f"{self.chance[key]:.4f} (chance)")
            rows.append({"benchmark": self.benchmark, "name": key, "value": value, "control": " / ".join(parts) or None})
        return rows


# --------------------------------------------------------------------------- hashing helpers


def config_hash(config: BaseModel | dict) -> str:
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the atlas-align source tree, when it runs from a git checkout."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# --------------------------------------------------------------------------- labels → concepts

_CATEGORY = re.compile(r"\b((?:noun|verb|adj|adv)\.[A-Za-z0-9_]+)\b")


def label_category(label: FeatureLabel) -> str | None:
    """The WordNet category a validated label names ('animals (noun.animal)' → 'noun.animal')."""
    explicit = getattr(label, "category", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    match = _CATEGORY.search(label.label)
    return match.group(1) if match else None


def validated_concepts(labels: FeatureLabels) -> dict[str, list[int]]:
    """Ground-truth category → validated atlas features labelled with it (sorted)."""
    concepts: dict[str, list[int]] = {}
    for item in labels.validated():
        category = label_category(item)
        if category:
            concepts.setdefault(category, []).append(item.feature)
    return {c: sorted(f) for c, f in sorted(concepts.items())}


# --------------------------------------------------------------------------- context


@dataclass
class BenchmarkContext:
    """The inputs a benchmark reads. ``subject`` and ``atlas`` have ``pooled_batches(texts)``.

    Pooled activations are cached per text, so benchmarks that share held-out texts share passes.
    ``model``/``tokenizer`` (a causal LM, the subject) are needed only by ``steering``.
    """

    alignment: Any  # AtlasAlignment (not imported: benchmarks sit below the artifact in the data flow)
    subject: Any
    atlas: Any
    heldout: Sequence[Sample]
    model: Any = None
    tokenizer: Any = None
    lexicon_rows: Sequence[dict] | None = None
    artifact_revision: str | None = None
    seed: int = 0
    _cache: dict[str, dict[str, torch.Tensor]] = field(default_factory=lambda: {"subject": {}, "atlas": {}}, repr=False)

    @property
    def labels(self) -> FeatureLabels:
        own = self.alignment.labels
        return own if len(own) else getattr(self.atlas, "labels", FeatureLabels())

    def heldout_texts(self) -> list[str]:
        return [s.text for s in self.heldout]

    def _pooled(self, which: str, texts: Sequence[str]) -> torch.Tensor:
        cache = self._cache[which]
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            source = self.subject if which == "subject" else self.atlas
            rows = torch.cat(list(source.pooled_batches(missing))).to(torch.float32)
            cache.update(zip(missing, rows))
        if not texts:
            width = self.alignment.config.d_s if which == "subject" else self.alignment.config.d_c
            return torch.empty(0, width)
        return torch.stack([cache[t] for t in texts])

    def subject_pooled(self, texts: Sequence[str]) -> torch.Tensor:
        return self._pooled("subject", texts)

    def atlas_pooled(self, texts: Sequence[str]) -> torch.Tensor:
        return self._pooled("atlas", texts)

    def provenance(self, texts: Sequence[str]) -> Provenance:
        cfg = self.alignment.config
        atlas_ref = getattr(self.atlas, "ref", None)
        return Provenance(
            harness_version=library_version(),
            git_sha=git_sha(),
            subject_model=cfg.subject.model_id,
            subject_revision=cfg.subject.revision,
            hookpoint=cfg.subject.hookpoint,
            atlas_id=cfg.atlas.atlas_id,
            atlas_revision=cfg.atlas.revision or getattr(atlas_ref, "revision", None),
            artifact_revision=self.artifact_revision or cfg.weights_sha256,
            heldout_fingerprint=texts_fingerprint(texts),
            n_heldout=len(texts),
            seed=self.seed,
        )


# --------------------------------------------------------------------------- benchmarks


class Benchmark(ABC):
    """Base class: a typed ``Config``, ``run(ctx) -> BenchmarkResult``. Subclasses register ``name@version``."""

    name: ClassVar[str]
    version: ClassVar[int]
    Config: ClassVar[type[BaseModel]]

    def __init__(self, **params: Any) -> None:
        try:
            self.config = self.Config(**params)
        except ValueError as exc:
            raise ConfigError(f"Invalid settings for benchmark {self.key}: {exc}") from None

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def not_applicable(self, ctx: BenchmarkContext) -> str | None:
        """Why this benchmark cannot run on ``ctx`` (checked before ``run``), or None when it applies."""
        return None

    @abstractmethod
    def run(self, ctx: BenchmarkContext) -> BenchmarkResult: ...

    def _result(self, ctx: BenchmarkContext, texts: Sequence[str], **fields: Any) -> BenchmarkResult:
        config = self.config.model_dump(mode="json")
        return BenchmarkResult(
            benchmark=self.key, config=config, config_hash=config_hash(config), provenance=ctx.provenance(texts), **fields
        )


BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark")


def register_benchmark(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: register under ``name@version`` (a duplicate raises)."""
    return BENCHMARKS.register(f"{cls.name}@{cls.version}")(cls)


def benchmark_key(name: str) -> str:
    """'translation' → its latest 'translation@N'; 'translation@2' → itself (checked)."""
    if "@" in name:
        BENCHMARKS.get(name)
        return name
    versions = [k for k in BENCHMARKS.names() if k.split("@")[0] == name]
    if not versions:
        BENCHMARKS.get(name)  # raises with the valid names and a suggestion
    return max(versions, key=lambda k: int(k.split("@")[1]))


def get_benchmark(name: str, **params: Any) -> Benchmark:
    return BENCHMARKS.get(benchmark_key(name))(**params)
