"""Tiny model folders and a word corpus on disk, so CLI subprocesses (plain or torchrun workers) can load them."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_models import WORDS, tiny_bert, tiny_llama, word_tokenizer

REPO = Path(__file__).resolve().parent.parent


def save_tiny_models(root: Path) -> tuple[str, str]:
    """Save a tiny Llama subject and a tiny BERT atlas model; return (--subject, --atlas) for the CLI."""
    subject, atlas = root / "subject", root / "atlas_model"
    tiny_llama(seed=0).save_pretrained(subject)
    word_tokenizer("bos").save_pretrained(subject)
    tiny_bert(seed=1).save_pretrained(atlas)
    word_tokenizer("cls").save_pretrained(atlas)
    return str(subject), f"model:{atlas}@1"


def write_corpus(path: Path, paragraphs: int, seed: int = 0) -> str:
    """Blank-line-separated paragraphs of 4-20 random vocabulary words (one window each)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(paragraphs):
            handle.write(" ".join(rng.choices(WORDS, k=rng.randint(4, 20))) + "\n\n")
    return str(path)


def cli_env(tmp: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: offline, this checkout importable, one thread per process."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", HF_HOME=str(tmp / "hf_home"),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "atlas_align.cli.main", "align", *args]


@pytest.fixture
def one_torch_thread():
    """Tiny models run ~10x slower with 2 intra-op threads on a busy 2-core box (spin-waiting), so use 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
