"""Resumable extraction: SIGKILL an align run after a checkpoint, --resume it, get the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from atlas_align.alignment.model import AtlasAlignment
from atlas_align.alignment.pipeline import AlignRequest, run_alignment
from atlas_align.cli.main import main
from atlas_align.corpus.sources import CorpusConfig
from atlas_align.fit.methods import get_method
from atlas_align.fit.statistics import AlignmentStatistics
from tests._dist_fixtures import REPO, cli_command, cli_env, save_tiny_models, write_corpus

SAMPLES = 2048  # 32 chunks of 64 texts; a checkpoint every 2 chunks (128 texts)


def checkpoint_n(path) -> int | None:
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:  # replaced atomically, so always complete
        return int(handle.metadata()["n"])


def kill_after_first_checkpoint(proc: subprocess.Popen, checkpoint, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        n = checkpoint_n(checkpoint)
        if n is not None and 0 < n < SAMPLES:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"the run ended (rc={proc.returncode}) before it could be interrupted mid-way")


@pytest.mark.integration
@pytest.mark.usefixtures("one_torch_thread")
def test_sigkilled_run_resumes_to_the_uninterrupted_translation(tmp_path):
    subject, atlas = save_tiny_models(tmp_path)
    corpus = write_corpus(tmp_path / "corpus.txt", paragraphs=int(SAMPLES * 1.25))
    checkpoint = tmp_path / "stats.safetensors"
    args = ["--subject", subject, "--layer", "2", "--atlas", atlas, "--corpus", corpus, "--samples", str(SAMPLES),
            "--checkpoint", str(checkpoint), "--checkpoint-every", "2"]
    env = cli_env(tmp_path)
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cli_command(*args, "--out", str(tmp_path / "killed")), cwd=REPO, env=env, stdout=log, stderr=log)
        kill_after_first_checkpoint(proc, checkpoint)
    assert proc.returncode == -signal.SIGKILL
    interrupted_at = checkpoint_n(checkpoint)
    assert 0 < interrupted_at < SAMPLES and interrupted_at % 128 == 0
    assert not (tmp_path / "killed").exists()

    # Resume in this process (through the same CLI command) to spare a second interpreter start-up.
    resumed = CliRunner().invoke(main, ["align", *args, "--resume", "--out", str(tmp_path / "resumed")])
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint_n(checkpoint) == SAMPLES

    request = AlignRequest(subject=subject, layer=2, atlas=atlas, corpus=CorpusConfig(source=corpus), samples=SAMPLES)
    uninterrupted = run_alignment(request, progress=False)
    final = AtlasAlignment.from_pretrained(tmp_path / "resumed")
    assert final.config.corpus.n_samples == SAMPLES
    torch.testing.assert_close(final.T, uninterrupted.alignment.T.to(final.T.dtype), rtol=0, atol=1e-6)
    # The shuffled-pairs control is checkpointed with the statistics, so it resumes too.
    control = AlignmentStatistics.load_companion(checkpoint, "control")
    control_T = get_method("procrustes").fit(control).T_
    torch.testing.assert_close(control_T.to(final.T.dtype), uninterrupted.control.T.to(final.T.dtype), rtol=0, atol=1e-6)
