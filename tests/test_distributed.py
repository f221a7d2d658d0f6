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
        for name, tensor in before.tensors().items():
            torch.testing.assert_close(getattr(after, name), tensor, rtol=0, atol=0)


def test_distributed_outside_torchrun_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node"):
        init_from_env()
