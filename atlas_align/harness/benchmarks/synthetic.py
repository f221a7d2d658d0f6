"""In-memory activation spaces and a planted alignment problem, for tests and for precomputed activations.

:class:`InMemorySpace` serves fixed pooled activations by text, so benchmarks run without models.
:func:`planted_problem` builds an atlas whose features belong to categories, a subject space that
is an exact (noisy) rotation of it, and the matching alignment — a benchmark must score it near 1,
and near chance once T is shuffled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import Sample
from atlas_align.errors import ConfigError
from atlas_align.refs import AtlasRef, SubjectRef


class InMemorySpace:
    """An ActivationSpace over fixed rows: ``pooled_batches(texts)`` looks every text up."""

    def __init__(self, rows: Mapping[str, torch.Tensor], *, ref: AtlasRef | None = None, labels: FeatureLabels | None = None, batch_size: int = 64) -> None:
        self._rows = dict(rows)
        first = next(iter(self._rows.values()))
        self.width = int(first.shape[-1])
        self.ref = ref or AtlasRef(atlas_id="in-memory", kind="raw")
        self.labels = labels or FeatureLabels()
        self.batch_size = batch_size

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        batch: list[torch.Tensor] = []
        for text in texts:
            try:
                batch.append(self._rows[text])
            except KeyError:
                raise ConfigError(f"The in-memory space has no activations for text {text[:40]!r}.") from None
            if len(batch) == self.batch_size:
                yield torch.stack(batch).float()
                batch = []
        if batch:
            yield torch.stack(batch).float()


@dataclass
class PlantedProblem:
    alignment: object  # AtlasAlignment
    subject: InMemorySpace
    atlas: InMemorySpace
    samples: list[Sample]


def planted_problem(*, n_texts: int = 600, n_categories: int = 6, features_per_category: int = 2, extra_features: int = 20, d_s: int | None = None, noise: float = 0.05, seed: int = 0, shuffle_T: bool = False) -> PlantedProblem:
    """Atlas features = category features (fire on their category's texts) + sparse background features.

    The subject space is ``row_normalise(atlas) @ Tᵀ + noise`` for a random semi-orthogonal T
    (d_s × d_c, orthonormal columns), and the returned alignment holds that T (or T with its
    columns permuted when ``shuffle_T``).
    """
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.fit.statistics import row_normalize

    g = torch.Generator().manual_seed(seed)
    d_c = n_categories * features_per_category + extra_features
    d_s = d_s or d_c + 8
    categories = [f"noun.concept{k}" for k in range(n_categories)]
    cat_index = torch.randint(0, n_categories, (n_texts,), generator=g)
    acts = torch.zeros(n_texts, d_c)
    for k in range(n_categories):
        rows = cat_index == k
        cols = slice(k * features_per_category, (k + 1) * features_per_category)
        acts[rows, cols] = 1.0 + torch.rand(int(rows.sum()), features_per_category, generator=g)
    background = torch.rand(n_texts, extra_features, generator=g)
    acts[:, n_categories * features_per_category :] = torch.where(background > 0.8, background, torch.zeros(()))
    T, _ = torch.linalg.qr(torch.randn(d_s, d_c, generator=g))  # orthonormal columns
    subject = row_normalize(acts) @ T.T + noise * torch.randn(n_texts, d_s, generator=g)
    texts = [f"text {i} about concept {int(c)}" for i, c in enumerate(cat_index)]
    samples = [Sample(text=t, category=categories[int(c)]) for t, c in zip(texts, cat_index)]
    labels = FeatureLabels(
        [FeatureLabel(feature=k * features_per_category + j, label=f"concept {k} (noun.concept{k})", source="planted", validated=True) for k in range(n_categories) for j in range(features_per_category)]
        + [FeatureLabel(feature=f, label=f"background {f}", source="planted") for f in range(n_categories * features_per_category, d_c)]
    )
    fitted = T[:, torch.randperm(d_c, generator=g)] if shuffle_T else T
    atlas_ref = AtlasRef(atlas_id="planted-atlas", kind="sae")
    config = AlignmentConfig(subject=SubjectRef(model_id="planted-subject", hookpoint="layers.0"), atlas=atlas_ref, method="planted", d_s=d_s, d_c=d_c)
    alignment = AtlasAlignment(config, fitted, labels=labels)
    return PlantedProblem(
        alignment=alignment,
        subject=InMemorySpace(dict(zip(texts, subject))),
        atlas=InMemorySpace(dict(zip(texts, acts)), ref=atlas_ref, labels=labels),
        samples=samples,
    )
