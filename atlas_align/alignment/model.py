"""``AtlasAlignment``: a fitted translation between an atlas space and a subject model's space.

It answers the three questions users ask — *search* (which subject directions/features carry
this atlas concept?), *explain* (which atlas features does this subject activation express?)
and *steer* (push the subject model toward a concept) — and saves/loads itself as a versioned
artifact (``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``, via ``ModelHubMixin``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import ModelHubMixin
from torch import nn

from atlas_align.alignment.artifact import AlignmentConfig, read_config, read_weights, write_config, write_weights
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.errors import ArtifactNotFound, ConfigError, ShapeMismatchError
from atlas_align.files import CONFIG_FILENAME, LABELS_FILENAME, WEIGHTS_FILENAME
from atlas_align.fit.statistics import row_normalize
from atlas_align.models.steering import Steering
from atlas_align.models.steering import steer as _steer

Concept = int | Sequence[int] | dict[int, float] | torch.Tensor | str


@dataclass
class SearchResult:
    """Atlas features matching a query and the subject features ranked for their direction."""

    query: str
    atlas_features: list[tuple[FeatureLabel, float]]
    subject_features: list[tuple[int, float]]
    direction: torch.Tensor


class AtlasAlignment(
    ModelHubMixin,
    library_name="atlas-align",
    tags=["atlas-alignment"],
    repo_url="https://github.com/atlas-align/atlas-align",
    paper_url="https://arxiv.org/abs/2510.27413",
):
    """A translation matrix ``T`` (d_s × d_c) from atlas space to subject space, with its provenance."""

    def __init__(
        self,
        config: AlignmentConfig,
        T: torch.Tensor,
        subject_shift: torch.Tensor | None = None,
        subject_scale: torch.Tensor | None = None,
        labels: FeatureLabels | None = None,
    ) -> None:
        if tuple(T.shape) != (config.d_s, config.d_c):
            raise ShapeMismatchError(f"T has shape {tuple(T.shape)}, config says ({config.d_s}, {config.d_c}).")
        self.config = config
        self.T = T.detach().to(torch.float32)
        self.subject_shift = torch.zeros(config.d_s) if subject_shift is None else subject_shift.detach().float()
        self.subject_scale = torch.ones(config.d_s) if subject_scale is None else subject_scale.detach().float()
        self.labels = labels if labels is not None else FeatureLabels()
        self._T_rows_normalized = row_normalize(self.T)

    # --- explain -----------------------------------------------------------------------------
    def preprocess_subject(self, subject_acts: torch.Tensor) -> torch.Tensor:
        x = subject_acts.detach().float()
        if self.config.row_normalize:
            x = row_normalize(x)
        return (x - self.subject_shift) / self.subject_scale

    def translate_to_atlas(self, subject_acts: torch.Tensor) -> torch.Tensor:
        """Estimated atlas-feature activations (…, d_c) for subject activations (…, d_s)."""
        if subject_acts.shape[-1] != self.config.d_s:
            raise ShapeMismatchError(
                f"Subject activations have {subject_acts.shape[-1]} dims; this alignment expects d_s={self.config.d_s} "
                f"({self.config.subject.model_id} at {self.config.subject.hookpoint})."
            )
        return self.preprocess_subject(subject_acts) @ self.T

    def explain(self, model: nn.Module, tokenizer, text: str, top_k: int = 5, **kwargs):
        """Per word of ``text``: the top ``top_k`` atlas concepts the subject ``model`` expresses there.

        Token activations at the alignment's hookpoint are pooled per unit (words, joined where a
        token spans several; max by default, ``reduce="mean"`` too) and translated with ``T``.
        Returns an :class:`~atlas_align.alignment.explain.Explanation` (``.units``, ``.table()``,
        ``.to_html(concept)``); keyword options: ``reduce``, ``features``, ``max_length``.
        """
        from atlas_align.alignment.explain import explain_text

        return explain_text(self, model, tokenizer, text, top_k=top_k, **kwargs)

    # --- search ------------------------------------------------------------------------------
    def _concept_weights(self, concept: Concept) -> torch.Tensor:
        d_c = self.config.d_c
        if isinstance(concept, str):
            hits = self.labels.search(concept, top_k=5)
            if not hits:
                raise ConfigError(
                    f"No atlas feature label matches {concept!r}. Try a broader word, or pass feature ids; "
                    f"`atlas-align atlas search` lists labels."
                )
            best = hits[0][1]
            concept = [h.feature for h, score in hits if score >= best - 0.5]
        if isinstance(concept, torch.Tensor):
            if concept.shape != (d_c,):
                raise ShapeMismatchError(f"A weight vector over atlas features must have shape ({d_c},), got {tuple(concept.shape)}.")
            q = concept.detach().float()
        else:
            q = torch.zeros(d_c)
            items = concept.items() if isinstance(concept, dict) else ((f, 1.0) for f in ([concept] if isinstance(concept, int) else concept))
            for feature, weight in items:
                if not 0 <= int(feature) < d_c:
                    raise ConfigError(f"Atlas feature id {feature} is out of range (the atlas has {d_c} features).")
                q[int(feature)] += float(weight)
        if q.norm() == 0:
            raise ConfigError("The concept query is all zeros; give at least one atlas feature.")
        return q

    def concept_direction(self, concept: Concept) -> torch.Tensor:
        """Unit direction (d_s,) in subject space for atlas feature id(s), weights or a label query.

        s_c = T̄ q / ‖q‖ with T̄ = T with L2-normalised rows (each subject dimension's atlas profile).
        """
        q = self._concept_weights(concept)
        s = self._T_rows_normalized @ (q / q.norm())
        return s / s.norm().clamp_min(1e-12)

    def search(self, query: Concept, top_k: int = 10, subject_dictionary: torch.Tensor | None = None, *, scoring: str = "cosine", csls_k: int = 10) -> SearchResult:
        """Atlas features for a text query, and the subject neurons (or dictionary rows) ranked for it.

        ``scoring="csls"`` ranks by cross-domain similarity local scaling (Conneau et al. 2018):
        2·cos(s_c, y) − r(y), where r(y) is key y's mean cosine to its ``csls_k`` nearest atlas
        feature directions (every feature's direction through T), so a "hub" neuron close to many
        concepts no longer tops every search. (The query's own radius is the same for every key and
        is left out: it does not change the ranking.)
        """
        if scoring not in ("cosine", "csls"):
            raise ConfigError(f"scoring must be 'cosine' or 'csls'; got {scoring!r}.")
        atlas_hits = self.labels.search(query, top_k=top_k) if isinstance(query, str) else []
        direction = self.concept_direction(query)
        if subject_dictionary is None:
            keys = None  # the neuron basis: cos(e_y, v) = v[y]
            sims = direction
        else:
            if subject_dictionary.shape[-1] != self.config.d_s:
                raise ShapeMismatchError(f"The subject dictionary must have rows of width {self.config.d_s}.")
            keys = row_normalize(subject_dictionary.float())
            sims = keys @ direction
        if scoring == "csls":
            from atlas_align.fit.csls import mean_topk, neighbourhood_radius

            if isinstance(csls_k, bool) or int(csls_k) != csls_k or csls_k < 1:
                raise ConfigError(f"csls_k must be a whole number ≥ 1; got {csls_k!r}.")
            references = row_normalize(self._T_rows_normalized.T.double())  # (d_c, d_s): each atlas feature's direction
            radius = mean_topk(references.T, int(csls_k)) if keys is None else neighbourhood_radius(keys, references, int(csls_k))
            sims = (2.0 * sims.double() - radius).to(direction.dtype)
        k = min(top_k, sims.numel())
        values, indices = sims.topk(k)
        return SearchResult(
            query=str(query),
            atlas_features=atlas_hits,
            subject_features=[(int(i), float(v)) for v, i in zip(values, indices)],
            direction=direction,
        )

    # --- steer -------------------------------------------------------------------------------
    @contextmanager
    def steer(self, model: nn.Module, concept: Concept, strength: float = 0.25, *, absolute: bool = False, unit: float | None = None) -> Iterator[Steering]:
        """Context manager: steer ``model`` toward ``concept`` at the alignment's hookpoint (norm-preserving).

        ``strength`` is relative: the added vector's norm λ is ``strength`` × the median per-token
        norm at the hooked layer (measured on the first forward inside the block, or ``unit`` when
        given); ``absolute=True`` makes λ = ``strength``. Details: :func:`atlas_align.models.steering.steer`.
        Yields the :class:`~atlas_align.models.steering.Steering` (``.direction``, ``.coefficient`` = λ).
        Hooks are removed on exit.
        """
        direction = self.concept_direction(concept)
        with _steer(model, self.config.subject.hookpoint, direction, strength, absolute=absolute, unit=unit) as state:
            yield state

    # --- artifact I/O ----------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        return {"T": self.T, "subject_shift": self.subject_shift, "subject_scale": self.subject_scale}

    def generate_model_card(self, *args, **kwargs):
        """The card from ``cards/alignment.md.j2`` with per-instance metadata (base_model, tags, model-index)."""
        from atlas_align.alignment.card import render_card

        return render_card(self.config, repo_id=kwargs.get("repo_id"), revision=kwargs.get("revision"), metrics=kwargs.get("metrics"), plot=kwargs.get("plot"))

    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        sha = write_weights(save_directory, self.tensors(), self.config)
        self.config = self.config.model_copy(update={"weights_sha256": sha})
        write_config(save_directory, self.config)
        if len(self.labels):
            self.labels.save(save_directory / LABELS_FILENAME)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        proxies: dict | None = None,
        resume_download: bool | None = None,
        **model_kwargs,
    ) -> AtlasAlignment:
        """``ModelHubMixin``'s loading hook: a local folder, or a Hub repo at any branch, tag or commit sha.

        Called by the inherited ``from_pretrained(name_or_path, revision=..., cache_dir=..., token=...)``.
        """
        if os.path.isdir(model_id):
            folder = Path(model_id)
            missing = [n for n in (CONFIG_FILENAME, WEIGHTS_FILENAME) if not (folder / n).is_file()]
            if missing:
                raise ArtifactNotFound(f"{folder} is not an alignment artifact: missing {', '.join(missing)}.")
            files = {n: folder / n for n in (CONFIG_FILENAME, WEIGHTS_FILENAME, LABELS_FILENAME) if (folder / n).is_file()}
        else:
            from atlas_align.downloads import download_artifact_files

            files = download_artifact_files(
                model_id, revision=revision, cache_dir=None if cache_dir is None else str(cache_dir), token=token,
                force_download=force_download, local_files_only=local_files_only,
            )
        config = read_config(files[CONFIG_FILENAME])
        tensors = read_weights(files[WEIGHTS_FILENAME], config)
        labels = FeatureLabels.load(files[LABELS_FILENAME]) if LABELS_FILENAME in files else None
        return cls(config, tensors["T"], tensors["subject_shift"], tensors["subject_scale"], labels)

    def __repr__(self) -> str:
        c = self.config
        return f"AtlasAlignment({c.subject.model_id}@{c.subject.hookpoint} ← {c.atlas.atlas_id}, method={c.method}, T={tuple(self.T.shape)})"
