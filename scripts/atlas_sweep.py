#!/usr/bin/env python
"""Build atlas variants around ``STRONG_ATLAS_BUILD`` and log what each one achieves (issue 14).

Every attempt is a real :func:`~atlas_align.atlas.build.build_atlas` run on the built-in WordNet
corpus; only the per-token model activations are cached between attempts (``--cache``, keyed by
the exact texts, hookpoint and tokenizer settings), which does not change any result: the
activations are a deterministic function of those inputs. Each attempt appends one JSON line to
``docs/atlas_attempts.jsonl`` (its build config, the training summary from ``atlas.json``, the
label statistics from ``labels.jsonl`` and the build seconds); ``scripts/atlas_report.py`` renders
that log and the shipped atlases into ``docs/ATLAS.md``.

    python scripts/atlas_sweep.py --list
    python scripts/atlas_sweep.py w4096-k24-1m w4096-k64-1m      # run attempts by name
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from atlas_align.atlas import build as build_module  # noqa: E402
from atlas_align.atlas.atlas import STRONG_ATLAS_ID  # noqa: E402
from atlas_align.atlas.build import STRONG_ATLAS_BUILD, AtlasBuildConfig, build_atlas, category_stats  # noqa: E402

LOG = REPO_ROOT / "docs" / "atlas_attempts.jsonl"

# Attempt name → overrides of STRONG_ATLAS_BUILD (cheapest first). "all" windows = samples above the corpus size.
ATTEMPTS: dict[str, dict] = {
    "w4096-k24-300k": {"k": 24, "training_tokens": 300_000},
    "w4096-k64-300k": {"k": 64, "training_tokens": 300_000},
    "w4096-k128-300k": {"k": 128, "training_tokens": 300_000},
    "w4096-k24-1m": {"k": 24, "training_tokens": 1_000_000},
    "w4096-k64-1m": {"k": 64, "training_tokens": 1_000_000},
    "w4096-k128-1m": {"k": 128, "training_tokens": 1_000_000},
    "w6144-k128-1m": {"width": 6144, "k": 128, "training_tokens": 1_000_000},
    "w4096-k32-1m": {"k": 32, "training_tokens": 1_000_000},
    "w4096-k48-1m": {"k": 48, "training_tokens": 1_000_000},
    "w4096-k64-2m": {"k": 64, "training_tokens": 2_000_000},
    "w6144-k64-1m": {"width": 6144, "k": 64, "training_tokens": 1_000_000},
    "L5-w4096-k128-1m": {"layer": 5, "k": 128, "training_tokens": 1_000_000},
    "L4-w4096-k128-1m": {"layer": 4, "k": 128, "training_tokens": 1_000_000},
    "L5-w4096-k64-1m": {"layer": 5, "k": 64, "training_tokens": 1_000_000},
    "strong": {},
}


def cached_token_activations(cache: Path):
    """``token_activations`` memoised on disk by (texts, hookpoint, batch size, max length, tokenizer)."""
    original = build_module.token_activations

    def wrapped(model, tokenizer, hookpoint, texts, *, batch_size=32, max_length=64, progress=False):
        digest = hashlib.sha256()
        for part in (type(model).__name__, getattr(tokenizer, "name_or_path", ""), hookpoint.path, str(batch_size), str(max_length)):
            digest.update(part.encode() + b"\0")
        for text in texts:
            digest.update(text.encode() + b"\0")
        path = cache / f"{digest.hexdigest()[:24]}.pt"
        if path.is_file():
            acts, offsets = torch.load(path)
            return build_module.TokenActivations(acts=acts, offsets=offsets)
        result = original(model, tokenizer, hookpoint, texts, batch_size=batch_size, max_length=max_length, progress=progress)
        cache.mkdir(parents=True, exist_ok=True)
        torch.save((result.acts, result.offsets), path)
        return result

    return wrapped


def category_ceilings(atlas, cfg: AtlasBuildConfig) -> dict:
    """Per category: held-out windows, the best AUROC any single feature reaches on *all* of them, training windows and tokens.

    An upper bound on what the labeller can validate (it chooses on one half and checks on the other):
    a category whose best single-feature AUROC is under ``validation_auroc`` cannot be covered.
    """
    heldout = build_module.draw_samples(cfg.corpus, "heldout", cfg.heldout_samples, cfg.seed + 1, cfg.scan_limit)
    model, tokenizer = atlas.model_and_tokenizer()
    hook = build_module.resolve_hookpoint(model, cfg.layer, "resid", cfg.hookpoint)
    with build_module.pinned_threads(cfg.threads):
        tokens = build_module.token_activations(model, tokenizer, hook, [s.text for s in heldout], batch_size=cfg.model_batch_size, max_length=cfg.max_length)
        pooled = build_module.pooled_features(atlas.sae.encode, tokens)
        names = sorted({s.category for s in heldout if s.category})
        onehot = torch.zeros(len(heldout), len(names), dtype=torch.bool)
        for i, s in enumerate(heldout):
            if s.category:
                onehot[i, names.index(s.category)] = True
        best = torch.nan_to_num(build_module.auroc_matrix(pooled, onehot), nan=0.0).max(0).values
        train = build_module.draw_samples(cfg.corpus, "train", cfg.samples, cfg.seed, cfg.scan_limit)
        offsets = build_module.token_activations(model, tokenizer, hook, [s.text for s in train], batch_size=cfg.model_batch_size, max_length=cfg.max_length).offsets
    lengths = (offsets[1:] - offsets[:-1]).tolist()
    windows: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for sample, n in zip(train, lengths, strict=True):
        windows[sample.category] = windows.get(sample.category, 0) + 1
        tokens[sample.category] = tokens.get(sample.category, 0) + n
    return {
        c: {"heldout": int(onehot[:, j].sum()), "best_auroc": round(float(best[j]), 4), "train_windows": windows.get(c, 0), "train_tokens": tokens.get(c, 0)}
        for j, c in enumerate(names)
    }


def run_attempt(name: str, cfg: AtlasBuildConfig, out: Path | None) -> dict:
    # The final attempt carries the shipped atlas' id, so its folder can be compared byte for byte with
    # what `scripts/build_default_atlas.py --atlas 4k` writes (fresh activations, another process).
    atlas, report = build_atlas(cfg, name=STRONG_ATLAS_ID if name == "strong" else f"attempt:{name}", echo=print)
    stats = category_stats(atlas.labels)
    if out is not None:
        atlas.save(out / name)
    record = {
        "attempt": name,
        "build": cfg.model_dump(mode="json"),
        "training": atlas.config.training.model_dump(mode="json") if atlas.config.training else None,
        "corpus": atlas.config.corpus.model_dump(mode="json") if atlas.config.corpus else None,
        "labels": stats,
        "seconds": round(report.seconds, 1),
        "ceilings": category_ceilings(atlas, cfg),
        "torch": torch.__version__,
    }
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attempts", nargs="*", help="attempt names (see --list)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/atlas-align-token-cache"), help="token activation cache folder")
    parser.add_argument("--out", type=Path, default=None, help="also save each attempt's atlas folder here")
    parser.add_argument("--log", type=Path, default=LOG)
    args = parser.parse_args()
    if args.list or not args.attempts:
        for name, overrides in ATTEMPTS.items():
            print(f"{name:20s} {overrides}")
        return 0
    unknown = [a for a in args.attempts if a not in ATTEMPTS]
    if unknown:
        parser.error(f"unknown attempts: {', '.join(unknown)}")
    build_module.token_activations = cached_token_activations(args.cache)
    for name in args.attempts:
        cfg = STRONG_ATLAS_BUILD.model_copy(update=ATTEMPTS[name])
        start = time.perf_counter()
        print(f"== {name}: {ATTEMPTS[name]}", flush=True)
        record = run_attempt(name, cfg, args.out)
        s = record["labels"]
        print(
            f"== {name}: validated {s['validated']}, categories {s['categories_covered']}, max share {s['max_share']:.1%} "
            f"({s['max_category']}), dead {record['training']['dead_features']}, EV {record['training']['explained_variance']:.3f}, "
            f"{time.perf_counter() - start:.0f}s",
            flush=True,
        )
        with args.log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
