#!/usr/bin/env python
"""The default demo pair against issue 14's targets, old setup beside new → docs/targets.json (README table).

SmolLM2-135M-Instruct block 20 aligned to the atlas on the demo's 2,000 shared texts and scored on the
benchmarks' default held-out sample (``heldout_samples(CorpusConfig(), 1000, seed 0)``: 1,000 windows of the
built-in corpus) with the default benchmark settings (translation@2, retrieval@2, pairs@1), each metric
beside its shuffled-T control. One row per setup, each a real fit:

* **as filed** — what the numbers were when the quality issue was filed: the first 2,000 windows of the corpus
  (``sampling="sequential"``; the built-in corpus is sorted by category), ``PoolingConfig.legacy()`` (the
  attention-sink token pooled), the old built-in atlas, Procrustes;
* **sampling + pooling fixed** — a uniform sample and the default pooling (sink and massive tokens dropped);
* **new default atlas** — the same with the atlas that is now the default;
* further methods (``--methods``) on the new atlas, for scale.

Pooled rows go through the activation cache (``--cache``), 500 texts a chunk, so SmolLM2 runs each text once
per pooling rule and a re-run (or an interrupted one) costs seconds.

    python scripts/measure_targets.py --cache ~/.cache/atlas-align/activations     # ~30 min on 2 CPU cores cold
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUBJECT, LAYER, N_TRAIN, N_HELDOUT, BATCH, MAX_LENGTH, CHUNK = "smollm2", 20, 2000, 1000, 16, 128, 500
OLD_ATLAS = "builtin:minilm-l3-wordnet"
TARGETS = {"auroc_validated": 0.85, "ap": 0.5, "mrr": 0.95}  # issue 14, item 5 (the paper's numbers)
# (key, benchmark, metric, label)
METRICS = [
    ("auroc_validated", "translation", "auroc_validated", "translation AUROC, validated features"),
    ("auroc", "translation", "auroc", "translation AUROC (100 sampled features)"),
    ("ap", "translation", "ap", "translation AP (100 sampled features)"),
    ("ap_validated", "translation", "ap_validated", "translation AP, validated features"),
    ("mrr", "retrieval", "mrr", "retrieval MRR"),
    ("mrr_centered", "retrieval_centered", "mrr", "retrieval MRR, centered (opt-in)"),
    ("pairs_mrr", "pairs", "mrr", "pairs MRR"),
]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chunked(texts: list[str], size: int = CHUNK) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def pooled(space, identity: dict, texts: list[str], cache, label: str):
    import torch

    parts = []
    for i, chunk in enumerate(chunked(texts)):
        misses, start = cache.misses, time.perf_counter()
        parts.append(cache.pooled(space, identity, chunk))
        if cache.misses > misses:
            say(f"  {label}: chunk {i + 1}/{-(-len(texts) // CHUNK)} ({len(chunk)} texts) in {time.perf_counter() - start:.0f}s")
    return torch.cat(parts)


def fit_and_score(method: str, subject_train, atlas_train, subject_heldout, atlas_heldout, heldout, subject_ref, atlas_space, corpus, pooling) -> dict:
    from atlas_align.alignment.pipeline import _wrap
    from atlas_align.fit.methods.base import get_method
    from atlas_align.fit.statistics import AlignmentStatistics
    from atlas_align.harness.benchmarks import BenchmarkContext
    from atlas_align.harness.benchmarks.synthetic import InMemorySpace
    from atlas_align.harness.evaluation import run_benchmarks
    from atlas_align.refs import CorpusRef

    stats = AlignmentStatistics(subject_train.shape[1], atlas_train.shape[1], get_method(method).needs_gram)
    for start in range(0, len(subject_train), 256):
        stats.update(subject_train[start : start + 256].double(), atlas_train[start : start + 256].double())
    corpus_ref = CorpusRef(source=corpus.source, n_samples=len(subject_train), window_words=corpus.window_words, heldout_fraction=corpus.heldout_fraction,
                           split_salt=corpus.split_salt, sampling=corpus.sampling, sample_seed=corpus.sample_seed)  # fmt: skip
    alignment = _wrap(method, {}, stats, subject_ref, atlas_space, corpus_ref, pooling)
    texts = list(dict.fromkeys(s.text for s in heldout))
    ctx = BenchmarkContext(alignment=alignment, subject=InMemorySpace(dict(zip(texts, subject_heldout))),
                           atlas=InMemorySpace(dict(zip(texts, atlas_heldout)), ref=atlas_space.ref, labels=atlas_space.labels), heldout=heldout, seed=0)  # fmt: skip
    results = {key.split("@")[0]: value for key, value in run_benchmarks(ctx, ("translation", "retrieval", "pairs")).items()}
    results["retrieval_centered"] = run_benchmarks(ctx, ("retrieval",), {"retrieval": {"center": True}})["retrieval@2"]
    out = {}
    for key, bench, name, _ in METRICS:
        result = results[bench]
        out[key] = {"value": result.metrics.get(name), "control": result.controls.get(name), "chance": result.chance.get(name)}
    out["n_validated"] = results["translation"].metrics.get("n_validated")
    out["n_concepts"] = results["retrieval"].metrics.get("n_concepts")
    return out


def run(args) -> dict:
    from atlas_align.atlas.atlas import DEFAULT_ATLAS_ID
    from atlas_align.atlas.spaces import load_atlas_space
    from atlas_align.corpus.sources import CorpusConfig, iter_samples
    from atlas_align.harness.evaluation import heldout_samples
    from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
    from atlas_align.models.assets import canonical_model_id
    from atlas_align.models.cache import ActivationCache, atlas_identity, subject_identity
    from atlas_align.models.loading import load_subject
    from atlas_align.refs import PoolingConfig, SubjectRef

    started = time.perf_counter()
    cache = ActivationCache(args.cache)
    uniform, sequential = CorpusConfig(), CorpusConfig(sampling="sequential")
    heldout = heldout_samples(uniform, N_HELDOUT, 0)
    heldout_texts = list(dict.fromkeys(s.text for s in heldout))
    larger = [int(n) for n in args.larger.split(",") if n]
    sizes_all = [N_TRAIN, *larger, *(int(n) for n in args.sizes.split(",") if n)]
    train = {"uniform": [s.text for s in iter_samples(uniform, "train", limit=max(sizes_all))],
             "sequential": [s.text for s in iter_samples(sequential, "train", limit=N_TRAIN)]}  # fmt: skip
    model, tokenizer, _ = load_subject(SUBJECT)
    hook = resolve_hookpoint(model, LAYER)
    model_id = canonical_model_id(SUBJECT)
    n_layers = model.config.num_hidden_layers
    subject_ref = SubjectRef(model_id=model_id, hookpoint=hook.path, layer=LAYER, n_layers=n_layers)
    new_atlas = args.new_atlas or DEFAULT_ATLAS_ID
    setups = [
        {"name": "as filed (issue 14)", "sampling": "sequential", "pooling": "legacy", "atlas": OLD_ATLAS, "method": "procrustes"},
        {"name": "sampling + pooling fixed", "sampling": "uniform", "pooling": "default", "atlas": OLD_ATLAS, "method": "procrustes"},
    ]
    if new_atlas != OLD_ATLAS:
        setups.append({"name": "new default atlas", "sampling": "uniform", "pooling": "default", "atlas": new_atlas, "method": "procrustes"})
    setups += [{"name": f"new default atlas, {m}", "sampling": "uniform", "pooling": "default", "atlas": new_atlas, "method": m} for m in args.methods.split(",") if m]
    for n in larger:  # more shared texts (a longer prefix of the same uniform sample)
        setups += [
            {"name": f"first atlas, {n:,} texts", "sampling": "uniform", "pooling": "default", "atlas": OLD_ATLAS, "method": "procrustes", "n": n},
            {"name": f"new default atlas, {n:,} texts", "sampling": "uniform", "pooling": "default", "atlas": new_atlas, "method": "procrustes", "n": n},
            *({"name": f"new default atlas, {n:,} texts, {m}", "sampling": "uniform", "pooling": "default", "atlas": new_atlas, "method": m, "n": n} for m in args.methods.split(",")[:1] if m),
        ]
    sizes = [int(n) for n in args.sizes.split(",") if n]
    curve_arms = [(OLD_ATLAS, "procrustes"), (new_atlas, "procrustes"), *((new_atlas, m) for m in args.methods.split(",")[:1] if m)]
    for setup in setups:
        setup.setdefault("n", N_TRAIN)
        setup["table"] = True
    for n in sizes:  # the curve: prefixes of the same uniform sample
        for atlas, method in curve_arms:
            if not any(x["n"] == n and x["atlas"] == atlas and x["method"] == method and x["sampling"] == "uniform" and x["pooling"] == "default" for x in setups):
                setups.append({"name": f"curve {n:,}", "sampling": "uniform", "pooling": "default", "atlas": atlas, "method": method, "n": n, "table": False})
    poolings = {"legacy": PoolingConfig.legacy(), "default": PoolingConfig()}
    subject_rows: dict = {}
    atlas_spaces: dict = {}
    rows = []
    for setup in setups:
        pooling = poolings[setup["pooling"]]
        key = (setup["sampling"], setup["pooling"], setup["n"])
        texts = train[setup["sampling"]][: setup["n"]]
        if key not in subject_rows:
            space = ActivationExtractor(model, tokenizer, hook, batch_size=BATCH, max_length=MAX_LENGTH, pooling=pooling)
            identity = subject_identity(model_id, hook.path, pooling, MAX_LENGTH)
            say(f"{SUBJECT} block {LAYER}, {setup['pooling']} pooling: {len(texts)} {setup['sampling']} train + {len(heldout_texts)} held-out texts ...")
            subject_rows[key] = (pooled(space, identity, texts, cache, "subject train"), pooled(space, identity, heldout_texts, cache, "subject held-out"))
        if setup["atlas"] not in atlas_spaces:
            space = load_atlas_space(setup["atlas"], batch_size=BATCH, max_length=MAX_LENGTH)
            atlas_spaces[setup["atlas"]] = (space, atlas_identity(space.ref.atlas_id, space.ref.revision, MAX_LENGTH))
        space, identity = atlas_spaces[setup["atlas"]]
        a_train = pooled(space, identity, texts, cache, f"atlas {setup['atlas']} train")
        a_heldout = pooled(space, identity, heldout_texts, cache, f"atlas {setup['atlas']} held-out")
        s_train, s_heldout = subject_rows[key]
        corpus = uniform if setup["sampling"] == "uniform" else sequential
        metrics = fit_and_score(setup["method"], s_train, a_train, s_heldout, a_heldout, heldout, subject_ref, space, corpus, pooling)
        row = {**setup, "atlas": space.ref.atlas_id, "atlas_width": space.width, "atlas_validated": len(space.labels.validated()), "metrics": metrics}
        rows.append(row)
        say(f"  {setup['name']:<34} " + "  ".join(f"{k} {metrics[k]['value']:.3f}" for k, *_ in METRICS if metrics[k]["value"] is not None))
    return {
        "generated_by": "scripts/measure_targets.py " + " ".join(args.argv),
        "subject": {"model_id": model_id, "layer": LAYER, "hookpoint": hook.path, "n_layers": n_layers},
        "n_train": N_TRAIN,
        "larger": larger,
        "sizes": sizes,
        "heldout": {"n": len(heldout), "distinct": len(heldout_texts), "seed": 0},
        "targets": TARGETS,
        "labels": {key: label for key, _, _, label in METRICS},
        "order": [key for key, *_ in METRICS],
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


PLOTTED = ["auroc_validated", "ap", "mrr", "pairs_mrr"]


def plot(data: dict, path: Path) -> Path:
    """Each targeted metric against the number of shared texts: one line per atlas × method, its control dashed, the target dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in data["rows"] if r["sampling"] == "uniform" and r["pooling"] == "default"]
    arms = list(dict.fromkeys((r["atlas"], r["method"]) for r in points))
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.6))
    for ax, key in zip(axes, PLOTTED):
        for i, (atlas, method) in enumerate(arms):
            mine = sorted({r["n"]: r for r in points if (r["atlas"], r["method"]) == (atlas, method)}.values(), key=lambda r: r["n"])
            if len(mine) < 2:
                continue
            xs = [r["n"] for r in mine]
            label = f"{atlas.removeprefix('builtin:')} {method} ({mine[0]['atlas_validated']} val.)"
            line = ax.plot(xs, [r["metrics"][key]["value"] for r in mine], marker="o", label=label, color=f"C{i}")[0]
            ax.plot(xs, [r["metrics"][key]["control"] for r in mine], ls="--", color=line.get_color(), alpha=0.5)
        if key in data["targets"]:
            ax.axhline(data["targets"][key], ls=":", color="black", label="target (the paper)")
        ax.set_xscale("log")
        ax.set_xlabel("shared texts")
        ax.set_title(data["labels"][key], fontsize=9)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{data['subject']['model_id'].rsplit('/', 1)[-1]} block {data['subject']['layer']}: held-out metrics vs shared texts (dashed: shuffled-T control)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-atlas", default=None, help="the atlas to compare with the old built-in one (default: the current default atlas)")
    parser.add_argument("--methods", default="cca,whitened_procrustes", help="further methods fitted on the new atlas (comma-separated)")
    parser.add_argument("--larger", default="10000", help="also fit on this many shared texts (comma-separated; the same uniform sample, longer)")
    parser.add_argument("--sizes", default="1000,2000,5000,10000", help="the curve's numbers of shared texts (both atlases, Procrustes and the first --methods)")
    parser.add_argument("--cache", default=None, help="activation cache (default $ATLAS_ALIGN_ACTIVATION_CACHE, else ~/.cache/atlas-align/activations)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "targets.json")
    args = parser.parse_args(argv)
    args.argv = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--cache") and a != args.cache]
    args.cache = args.cache or os.environ.get("ATLAS_ALIGN_ACTIVATION_CACHE") or str(Path.home() / ".cache" / "atlas-align" / "activations")
    result = run(args)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    say(f"wrote {args.out} in {result['wall_seconds']:.0f}s and {plot(result, args.out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
