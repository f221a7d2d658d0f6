"""The align workflow: models + corpus → one streaming pass → fitted AtlasAlignment (+ held-out check).

``run_alignment`` fits one subject layer; ``run_alignment_sweep`` fits k layers from the same pass
(the subject runs once per batch, stopped after the deepest requested layer). Layer L is the
*output of block L* (0-based), i.e. ``hidden_states[L + 1]`` in transformers terms; a float in
[0, 1] is a relative depth (:func:`atlas_align.models.activations.layer_index`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field, field_validator

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.atlas.spaces import ActivationSpace, load_atlas_space
from atlas_align.corpus.sources import CorpusConfig, iter_samples
from atlas_align.errors import ConfigError, CorpusError
from atlas_align.fit.collect import collect_statistics, collect_sweep_statistics
from atlas_align.fit.distributed import init_from_env
from atlas_align.fit.methods import METHODS, get_method
from atlas_align.fit.statistics import AlignmentStatistics, row_normalize
from atlas_align.models.activations import ActivationExtractor, Hookpoint, LayerSweepExtractor, block_list, hidden_size, layer_index, resolve_hookpoint
from atlas_align.models.loading import load_subject
from atlas_align.refs import CorpusRef, PoolingConfig, SubjectRef, SubjectSpec

DEFAULT_SUBJECT = "smollm2"
DEFAULT_SUBJECT_LAYER = 0.66  # a relative depth: valid for every model (block round(0.66·(n−1)))
LAYER_MEANING = "layer L = the output of block L (0-based) = hidden_states[L+1]"
DEFAULT_ATLAS = "builtin"


class AlignRequest(BaseModel):
    """Everything `atlas-align align` needs (validated once, here)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = DEFAULT_SUBJECT
    layer: int | float | None = Field(DEFAULT_SUBJECT_LAYER, description="block index, negative from the end, or a relative depth in [0, 1] (a float)")
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
    unit_pooling: Literal["max", "mean"] | None = Field(None, description="fit on one row per shared word (pooled max or mean) instead of one per text")
    seed: int = 0

    @property
    def subject_spec(self) -> SubjectSpec:
        """The subject and where to read it, as the one spec type the rest of the code uses."""
        return SubjectSpec(model=self.subject, layer=self.layer, hookpoint=self.hookpoint, site=self.site)

    @field_validator("layer")
    @classmethod
    def _layer_is_index_or_depth(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            if not value.is_integer():
                raise ValueError(f"a relative depth must lie in [0, 1], got {value}; use an integer for a block index")
            return int(value)
        return value


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


def heldout_texts(corpus: CorpusConfig, n: int) -> list[str]:
    """The held-out texts of the check printed after a fit (a uniform sample of ``n``)."""
    return [s.text for s in iter_samples(corpus, "heldout", limit=n)] if n else []


def heldout_report(alignment: AtlasAlignment, control: AtlasAlignment | None, subject: ActivationExtractor, atlas: ActivationSpace, corpus: CorpusConfig, n: int) -> HeldoutReport | None:
    """Translate held-out subject activations into atlas space and match them to the true atlas rows."""
    texts = heldout_texts(corpus, n)
    if len(texts) < 2:
        return None
    s_acts = torch.cat(list(subject.pooled_batches(texts)))
    c_acts = torch.cat(list(atlas.pooled_batches(texts)))
    return report_from_activations(alignment, control, s_acts, c_acts)


def report_from_activations(alignment: AtlasAlignment, control: AtlasAlignment | None, s_acts: torch.Tensor, c_acts: torch.Tensor) -> HeldoutReport:
    """The held-out check on pooled activations already computed (row i of both = held-out text i)."""
    n = len(s_acts)
    target = row_normalize(c_acts)
    target = row_normalize(target - target.mean(0))  # what distinguishes texts, not what all share

    sims, top1, mrr = _match_scores(alignment, s_acts, target)
    c_top1, c_mrr = _match_scores(control, s_acts, target)[1:] if control is not None else (float("nan"), float("nan"))
    off = sims[torch.arange(n), derangement(n, seed=0)]
    return HeldoutReport(
        n=n,
        matched_cosine=float(sims.diag().mean()),
        shuffled_cosine=float(off.mean()),
        top1=top1,
        mrr=mrr,
        control_top1=c_top1,
        control_mrr=c_mrr,
        chance_top1=1.0 / n,
    )


@dataclass
class AlignResult:
    alignment: AtlasAlignment
    control: AtlasAlignment
    report: HeldoutReport | None
    seconds: float
    statistics: AlignmentStatistics


def _wrap(method_name: str, params: dict, stats: AlignmentStatistics, subject_ref: SubjectRef, atlas: ActivationSpace, corpus_ref: CorpusRef, pooling: PoolingConfig | None = None, unit_pooling: str | None = None) -> AtlasAlignment:
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
        unit_pooling=unit_pooling,
    )
    return AtlasAlignment(config, method.T_, method.subject_shift_, method.subject_scale_, labels=atlas.labels)


def describe_layer(hook: Hookpoint, n_layers: int | None, requested: int | float | None) -> str:
    """One line saying which block a --layer value resolved to and what that means."""
    if hook.layer is None:
        return f"subject hookpoint {hook.path!r} (explicit --hookpoint)"
    shown = isinstance(requested, float) or (requested is not None and requested != hook.layer)
    asked = f"--layer {requested} → " if shown else ""
    of = f" of {n_layers} (0..{n_layers - 1})" if n_layers else ""
    site = "MLP output" if hook.site == "mlp" else f"hidden_states[{hook.layer + 1}]"
    return f"subject layer: {asked}block {hook.layer}{of}, module {hook.path!r}: the output of block {hook.layer} = {site}"


def _n_layers(model) -> int | None:
    try:
        return len(block_list(model)[1])
    except Exception:  # an exotic model: only --hookpoint works there, and it says so
        return None


def _say(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)


def _check_texts_used(req: AlignRequest, n_used: int, log: Callable[[str], None] | None) -> None:
    """Warn when the corpus held fewer training texts than --samples asked for; say how many were used."""
    if n_used < req.samples:
        source = req.corpus.source
        plain_text = source.endswith((".txt", ".txt.gz")) or Path(source).expanduser().is_dir()
        unit = f", --text-unit {req.corpus.text_unit}" if plain_text else ""
        message = (
            f"--samples {req.samples} asks for more texts than the corpus's train split holds: it has {n_used} "
            f"(windows of ≤ {req.corpus.window_words} words{unit}, held-out fraction {req.corpus.heldout_fraction}). "
            f"Fitted on {n_used}."
        )
        if log is None:
            warnings.warn(message, UserWarning, stacklevel=3)
        else:
            log(f"Warning: {message}")
    _say(log, f"training texts used: {n_used}")


def _corpus_ref(req: AlignRequest, n: int) -> CorpusRef:
    fields: dict[str, Any] = dict(
        source=req.corpus.source, n_samples=n, window_words=req.corpus.window_words,
        heldout_fraction=req.corpus.heldout_fraction, split_salt=req.corpus.split_salt, seed=req.seed,
        sampling=req.corpus.sampling, sample_seed=req.corpus.sample_seed, text_unit=req.corpus.text_unit,
    )  # fmt: skip
    return CorpusRef(**fields)


def _fit_pair(req: AlignRequest, stats: AlignmentStatistics, control_stats: AlignmentStatistics, hook: Hookpoint, model_id: str, atlas: ActivationSpace, n_layers: int | None, n_texts: int | None = None) -> tuple[AtlasAlignment, AtlasAlignment]:
    """The fitted alignment and its shuffled-pairs control for one subject hookpoint (``n_layers``: blocks in the subject)."""
    subject_ref = SubjectRef(model_id=model_id, hookpoint=hook.path, layer=hook.layer, site=hook.site, n_layers=n_layers)
    corpus_ref = _corpus_ref(req, stats.n if n_texts is None else n_texts)
    alignment = _wrap(req.method, req.method_params, stats, subject_ref, atlas, corpus_ref, req.pooling, req.unit_pooling)
    control = _wrap(req.method, req.method_params, control_stats, subject_ref, atlas, corpus_ref, req.pooling, req.unit_pooling)
    return alignment, control


def _open(req: AlignRequest, subject_bundle, atlas_space: ActivationSpace | None):
    if req.method not in METHODS:
        METHODS.get(req.method)  # raises the helpful "did you mean" error
    torch.manual_seed(req.seed)
    model, tokenizer, model_id = subject_bundle or load_subject(req.subject_spec.model, req.dtype)
    atlas = atlas_space or load_atlas_space(req.atlas, batch_size=req.batch_size, max_length=req.max_length, dtype=req.dtype, pooling=req.pooling)
    return model, tokenizer, model_id, atlas


def run_alignment(
    req: AlignRequest, *, progress: bool = True, subject_bundle=None, atlas_space: ActivationSpace | None = None,
    checkpoint: str | Path | None = None, resume: bool = False, checkpoint_every: int = 50,
    rank: int = 0, world_size: int = 1, reduce: Callable[[list[AlignmentStatistics]], list[AlignmentStatistics]] | None = None,
    log: Callable[[str], None] | None = None,
) -> AlignResult:
    """Fit ``req.method`` (and a shuffled-pairs control) in one pass over the corpus.

    Data-parallel use (``align_distributed`` below): this process pools only sample i with
    i % world_size == rank, ``reduce`` sums the ranks' statistics, and only rank 0 runs the held-out check.
    ``log`` receives progress lines (the resolved layer, the number of texts used, warnings); without
    it, a short corpus is reported with :func:`warnings.warn`.
    """
    start = time.perf_counter()
    model, tokenizer, model_id, atlas = _open(req, subject_bundle, atlas_space)
    spec = req.subject_spec
    hook = resolve_hookpoint(model, spec.layer, spec.site, spec.hookpoint)
    n_layers = _n_layers(model)
    _say(log, describe_layer(hook, n_layers, req.layer))
    subject = ActivationExtractor(model, tokenizer, hook, batch_size=req.batch_size, max_length=req.max_length, pooling=req.pooling)
    d_s = hidden_size(model)
    needs_gram = METHODS.get(req.method).needs_gram
    control_stats = AlignmentStatistics(d_s, atlas.width, needs_gram)
    pair_subject, pair_atlas, units = subject, atlas, None
    if req.unit_pooling is not None:  # one row per shared word: both sides come from one per-token pass per chunk
        if resume or checkpoint is not None or world_size > 1:
            raise ConfigError("--pooling unit runs in one process without checkpoints (statistics count words, not texts); drop --checkpoint/--resume/--distributed.")
        from atlas_align.fit.units import UnitPairs

        units = UnitPairs(subject, atlas, req.unit_pooling)
        pair_subject, pair_atlas = units.subject, units.atlas
    stats = collect_statistics(
        pair_subject, pair_atlas, iter_samples(req.corpus, "train", limit=req.samples), n_samples=req.samples, d_s=d_s, with_gram=needs_gram,
        progress=progress, checkpoint=checkpoint, resume=resume, control=control_stats,
        checkpoint_every=checkpoint_every, rank=rank, world_size=world_size,
    )
    if reduce is not None:
        stats, control_stats = reduce([stats, control_stats])
    if rank == 0:
        _check_texts_used(req, stats.n if units is None else units.n_texts, log)
        if units is not None:
            _say(log, f"shared words (unit rows, {req.unit_pooling}-pooled): {units.n_units}")
    alignment, control = _fit_pair(req, stats, control_stats, hook, model_id, atlas, n_layers, None if units is None else units.n_texts)
    report = heldout_report(alignment, control, subject, atlas, req.corpus, req.heldout_samples) if req.heldout_samples and rank == 0 else None
    return AlignResult(alignment, control, report, time.perf_counter() - start, stats)


def sweep_hookpoints(model, layers: Sequence[int | float] | str, site: str = "resid") -> list[Hookpoint]:
    """The distinct hookpoints of a sweep, in the order asked: ``"all"`` or indices / negative indices / relative depths."""
    n = _n_layers(model)
    if n is None:
        raise ConfigError(f"Cannot find the transformer blocks of {type(model).__name__}; a layer sweep needs them.")
    if isinstance(layers, str):
        if layers.strip().lower() != "all":
            raise ConfigError(f"Layers {layers!r}: give 'all' or a list such as 0.25,0.5,0.75,-2.")
        layers = list(range(n))
    if not layers:
        raise ConfigError("A layer sweep needs at least one layer.")
    seen: dict[int, Hookpoint] = {}
    for layer in layers:
        hook = resolve_hookpoint(model, layer, site)  # type: ignore[arg-type]
        seen.setdefault(layer_index(layer, n), hook)
    return list(seen.values())


def run_alignment_sweep(
    req: AlignRequest, layers: Sequence[int | float] | str, *, progress: bool = True, subject_bundle=None,
    atlas_space: ActivationSpace | None = None, log: Callable[[str], None] | None = None,
) -> list[AlignResult]:
    """Fit ``req.method`` at several subject layers from ONE pass: the subject runs once per batch.

    ``layers``: ``"all"`` or a list of block indices, negative indices or relative depths (floats in
    [0, 1]); layers that resolve to the same block are fitted once. ``req.layer`` / ``req.hookpoint``
    are ignored. Returns one result per distinct block, shallowest-first as asked; each result's
    ``seconds`` is the whole sweep's wall time (the pass is shared).
    """
    if req.hookpoint is not None:
        raise ConfigError("A layer sweep picks its hookpoints from --layers; drop --hookpoint.")
    if req.unit_pooling is not None:
        raise ConfigError("--pooling unit fits one layer at a time; drop --layers (or use --layer).")
    start = time.perf_counter()
    model, tokenizer, model_id, atlas = _open(req, subject_bundle, atlas_space)
    hooks = sweep_hookpoints(model, layers, req.site)
    n_layers = _n_layers(model)
    _say(log, f"layer sweep over {len(hooks)} block(s) of {n_layers}: {', '.join(str(h.layer) for h in hooks)} ({LAYER_MEANING}); one forward pass per batch, stopped after block {max(h.layer for h in hooks)}")
    subject = LayerSweepExtractor(model, tokenizer, hooks, batch_size=req.batch_size, max_length=req.max_length, pooling=req.pooling)
    needs_gram = METHODS.get(req.method).needs_gram
    stats, controls = collect_sweep_statistics(
        subject, atlas, iter_samples(req.corpus, "train", limit=req.samples), n_samples=req.samples,
        d_s=hidden_size(model), with_gram=needs_gram, progress=progress,
    )  # fmt: skip
    _check_texts_used(req, stats[0].n, log)
    texts = heldout_texts(req.corpus, req.heldout_samples)
    s_acts = c_acts = None
    if len(texts) >= 2:
        s_acts = torch.cat(list(subject.pooled_batches(texts)))  # (n, k, d): one pass for all layers
        c_acts = torch.cat(list(atlas.pooled_batches(texts)))
    results = []
    for j, hook in enumerate(hooks):
        alignment, control = _fit_pair(req, stats[j], controls[j], hook, model_id, atlas, n_layers)
        report = report_from_activations(alignment, control, s_acts[:, j], c_acts) if s_acts is not None else None
        results.append(AlignResult(alignment, control, report, 0.0, stats[j]))
    seconds = time.perf_counter() - start
    for result in results:
        result.seconds = seconds
    return results


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
