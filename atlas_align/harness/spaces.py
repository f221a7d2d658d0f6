"""Activation spaces an alignment can target: any object with ``width``, ``ref``, ``labels`` and
``pooled_batches(texts)``. A raw model space (no SAE, no labels) is the simplest; the labelled
SAE atlas in ``harness.atlas`` is the real one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import torch

from atlas_align.harness.activations import ActivationExtractor, hidden_size
from atlas_align.harness.labels import FeatureLabels
from atlas_align.registry.artifact import AtlasRef


class ActivationSpace(Protocol):
    width: int
    ref: AtlasRef
    labels: FeatureLabels

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]: ...


class RawModelSpace:
    """A model's own pooled hidden states at one hookpoint, used as an (unlabelled) atlas."""

    def __init__(self, extractor: ActivationExtractor, model_id: str, revision: str | None = None) -> None:
        self.extractor = extractor
        self.width = hidden_size(extractor.model)
        self.labels = FeatureLabels()
        self.ref = AtlasRef(
            atlas_id=f"model:{model_id}@{extractor.hookpoint.path}",
            revision=revision,
            model_id=model_id,
            hookpoint=extractor.hookpoint.path,
            kind="raw",
        )

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        return self.extractor.pooled_batches(texts, progress=progress, total=total)
