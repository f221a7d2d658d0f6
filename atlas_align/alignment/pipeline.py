"""The align workflow: models + corpus → one streaming pass → fitted AtlasAlignment (+ held-out check)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.atlas.spaces import ActivationSpace, load_atlas_space
from atlas_align.corpus.sources import CorpusConfig, iter_samples
from atlas_align.errors import ConfigError, CorpusError
from atlas_align.fit.collect import collect_statistics
from atlas_align.fit.distributed import init_from_env
from atlas_align.fit.methods import METHODS, get_method
from atlas_align.fit.statistics import AlignmentStatistics, row_normalize
from atlas_align.models.activations import ActivationExtractor, hidden_size, resolve_hookpoint
from atlas_align.models.loading import load_subject
from atlas_align.refs import CorpusRef, PoolingConfig, SubjectRef

DEFAULT_SUBJECT = "smollm2"
DEFAULT_SUBJECT_LAYER = 20
DEFAULT_ATLAS = "builtin"


class AlignRequest(BaseModel):
    """Everything `atlas-align align` needs (validated once, here)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = DEFAULT_SUBJECT
    layer: int | None = DEFAULT_SUBJECT_LAYER
    hookpoint: str | None = None
    site: Literal["resid", "mlp"] = "resid"
    atlas: str = DEFAULT_ATLAS
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    samples: int = Field(4000, gt=0)
    method: str = "procrustes"
    method_params: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(128, gt=1)
    dtype: Literal["float32", "bfloat16"] = "float32"
    heldout_samples: int = Field(256, ge=0)
    pooling: PoolingConfig = Field(default_factory=PoolingConfig)
    seed: int = 0


@dataclass
class HeldoutReport:
    """Held-out check of a fitted translation against the shuffled-pairs control."""

    n: int
    matched_cosine: float
    shuffled_cosine: float
    top1: float
    mrr: float
    control_top1: float
    control_mrr: float
    chance_top1: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A seeded uniform permutation of range(n) with no fixed point (a true shuffle of the whole set)."""
    if n < 2:
        raise ConfigError("A shuffled control needs at least 2 texts.")
    gen = torch.Generator().manual_seed(seed)
    while True:  # rejection sampling: about e ≈ 2.7 draws on average
        perm = torch.randperm(n, generator=gen)
        if not bool((perm == torch.arange(n)).any()):
            return perm


def match_ranks(sims: torch.Tensor) -> torch.Tensor:
    """Rank of each row's own column (the diagonal) among the row's scores, ties counted against it.

    A tie with another text ranks the true match behind it, and a non-finite true score ranks last,
    so an all-zero or all-NaN translation gets chance-level scores, never a perfect one.
    """
    diag = sims.diag()
    ahead = (sims >= diag[:, None]) | sims.isnan()
    ranks = ahead.sum(1)  # the diagonal itself counts once when finite
    ranks = torch.where(torch.isfinite(diag), ranks, torch.full_like(ranks, sims.shape[1]))
    return ranks.clamp(min=1)


def _match_scores(al: AtlasAlignment, s_acts: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    sims = row_normalize(al.translate_to_atlas(s_acts)) @ target.T
    ranks = match_ranks(sims).to(torch.float64)
    return sims, float((ranks == 1).double().mean()), float((1.0 / ranks).mean())


def heldout_report(alignment: AtlasAlignment, control: AtlasAlignment | None, subject: ActivationExtractor, atlas: ActivationSpace, corpus: CorpusConfig, n: int) -> HeldoutReport | None:
    """Translate held-out subject activations into atlas space and match them to the true atlas rows."""
    texts = [s.text for s in iter_samples(corpus, "heldout", limit=n)]
    if len(texts) < 2:
        return None
    s_acts = torch.cat(list(subject.pooled_batches(texts)))
    c_acts = torch.cat(list(atlas.pooled_batches(texts)))
    target = row_normalize(c_acts)
    target = row_normalize(target - target.mean(0))  # what distinguishes texts, not what all share

    sims, top1, mrr = _match_scores(alignment, s_acts, target)
    c_top1, c_mrr = _match_scores(control, s_acts, target)[1:] if control is not None else (float("nan"), float("nan"))
    off = sims[torch.arange(len(texts)), derangement(len(texts), seed=0)]
    return HeldoutReport(
        n=len(texts),
        matched_cosine=float(sims.diag().mean()),
        shuffled_cosine=float(off.mean()),
        top1=top1,
        mrr=mrr,
        control_top1=c_top1,
        control_mrr=c_mrr,
        chance_top1=1.0 / len(texts),
    )


@dataclass
class AlignResult:
    alignment: AtlasAlignment
    control: AtlasAlignment
    report: HeldoutReport | None
    seconds: float
    statistics: AlignmentStatistics


def _wrap(method_name: str, params: dict, stats: AlignmentStatistics, subject_ref: SubjectRef, atlas: ActivationSpace, corpus_ref: CorpusRef, pooling: PoolingConfig | None = None) -> AtlasAlignment:
    method = get_method(method_name, **params).fit(stats)
    config = AlignmentConfig(
        subject=subject_ref,
        atlas=atlas.ref,
        method=method_name,
        method_params=method.get_params(),
        row_normalize=method.row_normalize,
        corpus=corpus_ref,
        d_s=stats.d_s,
        d_c=stats.d_c,
        pooling=pooling or PoolingConfig(),
    )
    return AtlasAlignment(config, method.T_, method.subject_shift_, method.subject_scale_, labels=atlas.labels)


def run_alignment(
    req: AlignRequest, *, progress: bool = True, subject_bundle=None, atlas_space: ActivationSpace | None = None,
    checkpoint: str | Path | None = None, resume: bool = False, checkpoint_every: int = 50,
    rank: int = 0, world_size: int = 1, reduce: Callable[[list[AlignmentStatistics]], list[AlignmentStatistics]] | None = None,
) -> AlignResult:
    """Fit ``req.method`` (and a shuffled-pairs control) in one pass over the corpus.

    Data-parallel use (``align_distributed`` below): this process pools only sample i with
    i % world_size == rank, ``reduce`` sums the ranks' statistics, and only rank 0 runs the held-out check.
    """
    if req.method not in METHODS:
        METHODS.get(req.method)  # raises the helpful "did you mean" error
    torch.manual_seed(req.seed)
    start = time.perf_counter()
    model, tokenizer, model_id = subject_bundle or load_subject(req.subject, req.dtype)
    hook = resolve_hookpoint(model, req.layer, req.site, req.hookpoint)
    subject = ActivationExtractor(model, tokenizer, hook, batch_size=req.batch_size, max_length=req.max_length, pooling=req.pooling)
    atlas = atlas_space or load_atlas_space(req.atlas, batch_size=req.batch_size, max_length=req.max_length, dtype=req.dtype, pooling=req.pooling)
    d_s = hidden_size(model)
    needs_gram = METHODS.get(req.method).needs_gram
    control_stats = AlignmentStatistics(d_s, atlas.width, needs_gram)
    stats = collect_statistics(
        subject, atlas, iter_samples(req.corpus, "train", limit=req.samples), n_samples=req.samples, d_s=d_s, with_gram=needs_gram,
        progress=progress, checkpoint=checkpoint, resume=resume, control=control_stats,
        checkpoint_every=checkpoint_every, rank=rank, world_size=world_size,
    )
    if reduce is not None:
        stats, control_stats = reduce([stats, control_stats])
    subject_ref = SubjectRef(model_id=model_id, hookpoint=hook.path, layer=hook.layer, site=hook.site)
    corpus_ref = CorpusRef(
        source=req.corpus.source, n_samples=stats.n, window_words=req.corpus.window_words,
        heldout_fraction=req.corpus.heldout_fraction, split_salt=req.corpus.split_salt, seed=req.seed,
        sampling=req.corpus.sampling, sample_seed=req.corpus.sample_seed,
    )
    alignment = _wrap(req.method, req.method_params, stats, subject_ref, atlas, corpus_ref, req.pooling)
    control = _wrap(req.method, req.method_params, control_stats, subject_ref, atlas, corpus_ref, req.pooling)
    report = heldout_report(alignment, control, subject, atlas, req.corpus, req.heldout_samples) if req.heldout_samples and rank == 0 else None
    return AlignResult(alignment, control, report, time.perf_counter() - start, stats)


def _place_on(space, device: torch.device) -> None:
    """Move a raw model space's model to ``device``; other atlas spaces manage their own device."""
    extractor = getattr(space, "extractor", None)
    if device.type != "cpu" and extractor is not None:
        extractor.model.to(device)
        extractor.device = device


def align_distributed(req, out: str | Path, *, checkpoint: str | Path | None = None, resume: bool = False, checkpoint_every: int = 50, progress: bool = True):
    """Run ``run_alignment`` on this rank's share, all_reduce, fit; rank 0 saves to ``out`` and gets the result.

    Other ranks return ``None``. Checkpoints are per rank (``<stem>.rank<r>-of-<w><suffix>``), so
    ``resume=True`` needs the same world size as the interrupted run.
    """
    owns_group = not dist.is_initialized()
    ctx = init_from_env()
    try:
        model, tokenizer, model_id = load_subject(req.subject, req.dtype)
        model.to(ctx.device)
        atlas = load_atlas_space(req.atlas, batch_size=req.batch_size, max_length=req.max_length, dtype=req.dtype)
        _place_on(atlas, ctx.device)
        result = run_alignment(
            req, progress=progress and ctx.is_main, subject_bundle=(model, tokenizer, model_id), atlas_space=atlas,
            checkpoint=ctx.shard_checkpoint(checkpoint), resume=resume, checkpoint_every=checkpoint_every,
            rank=ctx.rank, world_size=ctx.world_size, reduce=ctx.reduce,
        )
        if result.statistics.n == 0:
            raise CorpusError("No training samples were read on any rank: the corpus or its train split is empty.")
        if ctx.is_main:
            result.alignment.save_pretrained(out)
        dist.barrier()  # nobody leaves before the artifact is written
        return result if ctx.is_main else None
    finally:
        if owns_group:
            dist.destroy_process_group()
