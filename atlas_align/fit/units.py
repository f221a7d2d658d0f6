"""Unit-level pairs for fitting: one (subject, atlas) row per word both tokenizers share, not per text.

:class:`UnitPairs` runs both models on a chunk of texts token by token, aligns the two token
streams on shared units (:mod:`atlas_align.models.spans`) and pools each side per unit (max or
mean). Its :attr:`~UnitPairs.subject` and :attr:`~UnitPairs.atlas` views have ``pooled_batches``
like any activation space, so the one streaming pass (:func:`~atlas_align.fit.collect.collect_statistics`)
feeds unit rows into the same :class:`~atlas_align.fit.statistics.AlignmentStatistics` and every
method fits on them unchanged. Whichever view is asked first computes both sides of a chunk and
keeps the other side for its view; the row counts of the two always agree (a text contributes one
row per shared unit, possibly none).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

from atlas_align.errors import ConfigError
from atlas_align.models.activations import ActivationExtractor
from atlas_align.models.spans import Reduce, extractor_token_activations, token_source, unit_activations


class UnitPairs:
    """Paired unit-pooled activations of a subject extractor and an atlas space (see the module docstring)."""

    def __init__(self, subject: ActivationExtractor, atlas, reduce: Reduce = "max") -> None:
        atlas_extractor = token_source(atlas)
        if token_source(subject) is None or atlas_extractor is None:
            raise ConfigError("Unit pooling needs both models themselves (per-token activations), not precomputed spaces.")
        if reduce not in ("max", "mean"):
            raise ConfigError(f"Unit pooling reduces with 'max' or 'mean', not {reduce!r}.")
        self.subject_extractor = token_source(subject)
        self.atlas_space = atlas
        self.atlas_extractor = atlas_extractor
        self.reduce = reduce
        self.n_texts = 0
        self.n_units = 0
        self._kept: dict[str, dict[tuple[str, ...], torch.Tensor]] = {"subject": {}, "atlas": {}}
        self.subject = _View(self, "subject", self.subject_extractor)
        self.atlas = _View(self, "atlas", atlas)

    def pairs(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(subject rows (U, d_s), atlas rows (U, d_c)) for the shared units of ``texts``, in text order."""
        s_tokens = extractor_token_activations(self.subject_extractor, texts)
        a_tokens = extractor_token_activations(self.atlas_extractor, texts)
        s_rows, a_rows = [], []
        for s, a in zip(s_tokens, a_tokens):
            _, (su, au) = unit_activations([s, a], self.reduce)
            s_rows.append(su)
            a_rows.append(au)
        self.n_texts += len(texts)
        subject = torch.cat(s_rows) if s_rows else torch.zeros(0, 0)
        atlas = torch.cat(a_rows) if a_rows else torch.zeros(0, 0)
        self.n_units += len(subject)
        return subject, atlas

    def _rows(self, side: str, texts: list[str]) -> torch.Tensor:
        key = tuple(texts)
        kept = self._kept[side]
        if key in kept:
            return kept.pop(key)
        subject, atlas = self.pairs(texts)
        other = "atlas" if side == "subject" else "subject"
        self._kept[other][key] = atlas if other == "atlas" else subject
        return subject if side == "subject" else atlas


class _View:
    """One side of :class:`UnitPairs` as an activation space; other attributes pass through to the wrapped space."""

    def __init__(self, owner: UnitPairs, side: str, inner) -> None:
        self._owner, self._side, self._inner = owner, side, inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        texts = list(texts)
        if texts:
            yield self._owner._rows(self._side, texts)


__all__ = ["UnitPairs"]
