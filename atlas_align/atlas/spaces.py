"""Activation spaces an alignment can target: any object with ``width``, ``ref``, ``labels`` and
``pooled_batches(texts)``. A raw model space (no SAE, no labels) is the simplest; the labelled
SAE atlas in ``atlas_align.atlas.atlas`` is the real one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import torch

from atlas_align.atlas.labels import FeatureLabels
from atlas_align.models.activations import ActivationExtractor, hidden_size, resolve_hookpoint
from atlas_align.models.loading import load_subject
from atlas_align.refs import AtlasRef, AtlasSpec, PoolingConfig, raw_atlas_id


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
            atlas_id=raw_atlas_id(model_id, extractor.hookpoint.path),
            revision=revision,
            model_id=model_id,
            hookpoint=extractor.hookpoint.path,
            kind="raw",
        )

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        return self.extractor.pooled_batches(texts, progress=progress, total=total)


def load_atlas_space(spec: str | AtlasSpec, *, batch_size: int, max_length: int, dtype: str = "float32", revision: str | None = None, pooling: PoolingConfig | None = None) -> ActivationSpace:
    """'model:NAME@LAYER' (or '@MODULE.PATH') → a raw model space; 'builtin', a folder or a repo id → a labelled SAE atlas.

    ``spec`` may be a string (parsed with :meth:`AtlasSpec.parse`) or an :class:`AtlasSpec`, e.g.
    ``AtlasSpec.from_ref(config.atlas)`` to reload exactly the atlas (and revision) an artifact recorded.
    ``pooling`` applies to raw model spaces; a labelled atlas pools as it was built (its model is an encoder).
    """
    spec = spec if isinstance(spec, AtlasSpec) else AtlasSpec.parse(spec, revision)
    if spec.kind == "raw":
        model, tokenizer, model_id = load_subject(spec.id, dtype)
        hook = resolve_hookpoint(model, layer=spec.layer, path=spec.hookpoint)
        return RawModelSpace(ActivationExtractor(model, tokenizer, hook, batch_size=batch_size, max_length=max_length, pooling=pooling), model_id, spec.revision)
    from atlas_align.atlas.atlas import Atlas

    return Atlas.load(spec).space(batch_size=batch_size, max_length=max_length)
