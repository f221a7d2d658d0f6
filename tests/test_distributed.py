"""Data-parallel alignment: torchrun with 2 CPU ranks (gloo) gives the single-process translation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from atlas_align.alignment.model import AtlasAlignment
from atlas_align.alignment.pipeline import AlignRequest, run_alignment
from atlas_align.corpus.sources import CorpusConfig
from atlas_align.errors import ConfigError
from atlas_align.fit.distributed import all_reduce_statistics, init_from_env
from atlas_align.fit.statistics import AlignmentStatistics
from tests._dist_fixtures import REPO, cli_command, cli_env, save_tiny_models, write_corpus

SAMPLES = 512


@pytest.mark.integration
@pytest.mark.usefixtures("one_torch_thread")
def test_torchrun_two_ranks_match_single_process(tmp_path):
    subject, atlas = save_tiny_models(tmp_path)
    corpus = write_corpus(tmp_path / "corpus.txt", paragraphs=700)
    args = ["--subject", subject, "--layer", "2", "--atlas", atlas, "--corpus", corpus, "--samples", str(SAMPLES)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = torchrun + cli_command(*args, "--distributed", "--out", str(tmp_path / "dist"))[1:]
    proc = subprocess.run(command, cwd=REPO, env=cli_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("Saved AtlasAlignment") == 1  # only rank 0 writes and prints
    assert f"N={SAMPLES}" in proc.stdout

    request = AlignRequest(subject=subject, layer=2, atlas=atlas, corpus=CorpusConfig(source=corpus), samples=SAMPLES)
    single = run_alignment(request, progress=False)
    parallel = AtlasAlignment.from_pretrained(tmp_path / "dist")
    assert parallel.config.corpus.n_samples == single.statistics.n == SAMPLES
    torch.testing.assert_close(parallel.T, single.alignment.T.to(parallel.T.dtype), rtol=0, atol=1e-6)


def _derived(stats: AlignmentStatistics) -> dict[str, torch.Tensor]:
    names = ("mean_s", "mean_c", "std_s", "std_c", "covariance", "centered_cross_norm")
    out = {name: getattr(stats, name)() for name in names} | {"cross_norm": stats.cross_norm}
    if stats.with_gram:  # both sides' Gram (whitened Procrustes and CCA need the subject side)
        sigma_s, _, sigma_c = stats.covariance_norm()
        out |= {"gram_norm": stats.gram_norm, "subject_gram": sigma_s, "atlas_gram": sigma_c}
    return out


def test_all_reduce_packs_every_tensor_and_n(tmp_path):
    first, second = AlignmentStatistics(3, 2, with_gram=True), AlignmentStatistics(3, 2)
    first.update(torch.randn(5, 3), torch.randn(5, 2))
    second.update(torch.randn(4, 3), torch.randn(4, 2))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        merged = all_reduce_statistics([first, second])
    finally:
        dist.destroy_process_group()
    for before, after in zip((first, second), merged):
        assert after.n == before.n and after.with_gram == before.with_gram
        assert set(after.tensors()) == set(before.tensors())
        for name, tensor in _derived(before).items():
            torch.testing.assert_close(_derived(after)[name], tensor, rtol=0, atol=1e-15, msg=name)


def _large_mean_rows(ratio: float, n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    z = torch.randn(n, 6, generator=g, dtype=torch.float64)
    subject = z[:, :4] + 0.5 * z[:, 2:] + ratio * torch.linspace(1, 2, 4, dtype=torch.float64)
    atlas = z[:, 1:6] - z[:, :5] - ratio * torch.linspace(1, 3, 5, dtype=torch.float64)
    return subject, atlas


def _rank_worker(rank: int, world_size: int, store: str, ratio: float, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        subject, atlas = _large_mean_rows(ratio)
        mine = torch.arange(subject.shape[0]) % world_size == rank  # sample i → rank i % world_size
        stats = AlignmentStatistics(4, 5, with_gram=True)
        for s, c in zip(subject[mine].split(64), atlas[mine].split(64)):
            stats.update(s, c)
        empty = AlignmentStatistics(4, 5)  # a rank-less shard (e.g. a control with no samples) merges to empty
        merged, merged_empty = all_reduce_statistics([stats, empty])
        assert merged_empty.n == 0
        if rank == 0:
            merged.save(out)
    finally:
        dist.destroy_process_group()


@pytest.mark.integration
@pytest.mark.parametrize("ratio", [1e4, 1e8])
def test_two_gloo_ranks_equal_one_process_at_large_means(tmp_path, ratio):
    """Issue 11: the all-reduced statistics equal a single process's to 1e-9 (relative) at mean/std ≥ 1e4."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_worker, args=(2, str(tmp_path / "store"), ratio, str(tmp_path / "merged.safetensors")), nprocs=2, join=True)
    parallel = AlignmentStatistics.load(tmp_path / "merged.safetensors")
    subject, atlas = _large_mean_rows(ratio)
    single = AlignmentStatistics(4, 5, with_gram=True)
    for s, c in zip(subject.split(64), atlas.split(64)):
        single.update(s, c)
    assert parallel.n == single.n == 600
    for name, tensor in _derived(single).items():
        error = float((_derived(parallel)[name] - tensor).abs().max() / tensor.abs().max())
        assert error <= 1e-12, (name, error)  # issue 11 asks ≤ 1e-9; measured ≈ 1e-16
    two_pass = torch.cov(torch.cat([subject, atlas], 1).T)[:4, 4:]
    assert float((parallel.covariance() - two_pass).abs().max() / two_pass.abs().max()) <= 1e-9


def test_distributed_outside_torchrun_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node"):
        init_from_env()
