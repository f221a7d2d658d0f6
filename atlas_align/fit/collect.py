"""One streaming pass: paired pooled activations → AlignmentStatistics (checkpointed, resumable, shardable),
or one per layer of a layer sweep (one forward pass per batch for all layers)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from atlas_align.atlas.spaces import ActivationSpace
from atlas_align.corpus.sources import Sample, batched
from atlas_align.errors import ConfigError, CorpusError
from atlas_align.fit.statistics import AlignmentStatistics
from atlas_align.models.activations import ActivationExtractor, LayerSweepExtractor


def collect_statistics(
    subject: ActivationExtractor,
    atlas: ActivationSpace,
    samples: Iterable[Sample],
    *,
    n_samples: int,
    d_s: int,
    with_gram: bool = False,
    chunk_size: int = 64,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    rank: int = 0,
    world_size: int = 1,
    control: AlignmentStatistics | None = None,
) -> AlignmentStatistics:
    """Accumulate statistics over the first ``n_samples`` samples (this rank's share of them).

    With ``world_size > 1`` sample i goes to rank ``i % world_size``; the caller sums the ranks'
    statistics. With ``checkpoint``, statistics are saved atomically every ``checkpoint_every``
    chunks and ``resume=True`` skips the samples a saved checkpoint already holds. ``control``, if
    given, accumulates a shuffled-pairs control (each subject row paired with the next text's atlas
    row), the chance baseline for held-out checks.
    """
    if n_samples <= 0:
        raise ConfigError(f"--samples must be positive, got {n_samples}.")
    stats = AlignmentStatistics(d_s, atlas.width, with_gram)
    if resume:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise ConfigError(f"--resume was given but no checkpoint exists at {checkpoint}; run without --resume.")
        stats = AlignmentStatistics.load(checkpoint)
        if (stats.d_s, stats.d_c, stats.with_gram) != (d_s, atlas.width, with_gram):
            raise ConfigError(
                f"Checkpoint {checkpoint} holds statistics of shape (d_s={stats.d_s}, d_c={stats.d_c}, gram={stats.with_gram}) "
                f"but this run needs (d_s={d_s}, d_c={atlas.width}, gram={with_gram}); it is from another run. "
                f"Point --checkpoint elsewhere or drop --resume."
            )
        saved_control = AlignmentStatistics.load_companion(checkpoint, "control") if control is not None else None
        if saved_control is not None:  # the control must resume too, or it would cover only the new samples
            control.copy_from(saved_control)
    companions = {"control": control} if control is not None else None
    mine = (s for i, s in enumerate(itertools.islice(samples, n_samples)) if i % world_size == rank)
    share = len(range(rank, n_samples, world_size))
    mine = itertools.islice(mine, stats.n, None)  # resume: skip what the checkpoint holds

    def save(chunk_index: int | None) -> None:
        if checkpoint is not None and (chunk_index is None or chunk_index % checkpoint_every == 0):
            stats.save(checkpoint, companions=companions)

    desc = f"aligning (rank {rank})" if world_size > 1 else "aligning"
    _accumulate(lambda texts: [_pool_all(subject, texts)], atlas, mine, [stats], [control] if control is not None else None,
                chunk_size=chunk_size, total=share, desc=desc, progress=progress, after_chunk=save)  # fmt: skip
    if stats.n == 0 and world_size == 1:
        raise CorpusError("No training samples were read: the corpus or its train split is empty.")
    save(None)
    return stats


def collect_sweep_statistics(
    subject: LayerSweepExtractor,
    atlas: ActivationSpace,
    samples: Iterable[Sample],
    *,
    n_samples: int,
    d_s: int,
    with_gram: bool = False,
    chunk_size: int = 64,
    progress: bool = True,
    with_control: bool = True,
) -> tuple[list[AlignmentStatistics], list[AlignmentStatistics] | None]:
    """One pass, k layers: statistics (and shuffled-pairs controls) for each of ``subject.hookpoints``.

    The subject runs once per batch (one forward pass stopped after the deepest hookpoint) and the
    atlas once per chunk, whatever k; statistics ``[j]`` pair hookpoint j with the atlas.
    """
    if n_samples <= 0:
        raise ConfigError(f"--samples must be positive, got {n_samples}.")
    k = len(subject.hookpoints)
    stats = [AlignmentStatistics(d_s, atlas.width, with_gram) for _ in range(k)]
    controls = [AlignmentStatistics(d_s, atlas.width, with_gram) for _ in range(k)] if with_control else None

    def pool_layers(texts: list[str]) -> list[torch.Tensor]:
        acts = _pool_all(subject, texts)  # (B, k, d)
        return [acts[:, j].contiguous() for j in range(k)]

    _accumulate(pool_layers, atlas, itertools.islice(samples, n_samples), stats, controls,
                chunk_size=chunk_size, total=n_samples, desc=f"aligning {k} layers", progress=progress)  # fmt: skip
    if stats[0].n == 0:
        raise CorpusError("No training samples were read: the corpus or its train split is empty.")
    return stats, controls


def _accumulate(
    pool_subject: Callable[[list[str]], list[torch.Tensor]],
    atlas: ActivationSpace,
    samples: Iterable[Sample],
    stats: list[AlignmentStatistics],
    controls: list[AlignmentStatistics] | None,
    *,
    chunk_size: int,
    total: int,
    desc: str,
    progress: bool,
    after_chunk: Callable[[int], None] | None = None,
) -> None:
    """The streaming loop: per chunk of texts, pool the atlas once and the subject once (one tensor per statistics)."""
    bar = tqdm(total=total, initial=stats[0].n, unit="seq", desc=desc, disable=not progress)
    for chunk_index, chunk in enumerate(batched(samples, chunk_size), 1):
        texts = [s.text for s in chunk]
        atlas_acts = _pool_all(atlas, texts)
        for j, subject_acts in enumerate(pool_subject(texts)):
            stats[j].update(subject_acts, atlas_acts)
            if controls is not None and len(texts) > 1:
                controls[j].update(subject_acts, atlas_acts.roll(1, dims=0))
        bar.update(len(texts))
        if after_chunk is not None:
            after_chunk(chunk_index)
    bar.close()


def _pool_all(space: ActivationSpace | ActivationExtractor, texts: list[str]) -> torch.Tensor:
    return torch.cat(list(space.pooled_batches(texts)))
