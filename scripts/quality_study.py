"""What limits alignment quality? Held-out benchmarks vs shared texts, atlas and subject → docs/QUALITY.md.

Three axes, every point scored on the same held-out texts the published board verifies with
(``heldout_samples(corpus, 300, VERIFY_SEED)``: 300 texts, its cached rows), each metric beside its shuffled-T control and chance:

1. **texts**: for a few subjects at one layer, fits on the first N of one uniform sample of the
   built-in corpus's train split (a prefix of a bottom-k sample *is* the smaller sample). The
   statistics are accumulated once, streaming, and snapshotted at every N.
2. **atlas**: every board subject at its best layer (highest Procrustes retrieval MRR on
   ``leaderboard/leaderboard.json``) against the built-in SAE atlas (MiniLM-L6 layer 3 + a
   1,536-feature TopK SAE, ``builtin:minilm-l3-wordnet``, named explicitly: the library's default is becoming the 4k one),
   against raw MiniLM layers (``model:minilm@L``, no SAE, no labels: translation and pairs only) and (2a) against every
   other SAE atlas of ``--sae-atlases SPEC[=LABEL],...`` (default: both shipped atlases, i.e. also the 4,096-feature
   ``builtin:minilm-l3-wordnet-4k``; a spec may be an atlas folder, e.g. one of ``scripts/atlas_sweep.py``'s attempts).
   Their records carry ``"atlas": "sae:<name>"`` (the 1,536-feature one keeps ``"sae"``) and quality.json's
   ``"sae_atlases"`` what each atlas is (layer, width, k, training texts, tokens shown, validated features, categories).
   Validated-feature AUROC/AP and retrieval average over each atlas's own validated features / concepts: across atlases
   they compare different feature sets; pairs MRR and the all-eligible-feature AUROC/AP are the like-for-like ones.
3. **subject**: the same subjects with the SAE atlas at one N (the board's 1,000 texts).

1b. **texts, long curve** (``--long-curve NAME:LAYER:SIZES --long-corpus FILE``): one subject against the same SAE atlas,
   fitted on the first N of a uniform sample of the train split of *another* corpus file, read with the default
   ``CorpusConfig``'s window_words / heldout_fraction / split_salt. The split is a keyed hash of each window's text, so
   the board's held-out texts (which every point is still scored on) stay held out there too; the study asserts that
   none of them is among the long curve's train texts. The built-in corpus caps every WordNet category at 1,500 rows
   (47,251 train windows); the uncapped corpus has ~135k train windows, enough for N = 10k → 30k → 50k+. Derive it
   (outside the package; Debian's ``wordnet-base``, WordNet 3.0) with::

       cd /tmp && apt-get download wordnet-base && dpkg -x wordnet-base_*_all.deb /tmp/wordnet-base
       python scripts/derive_wordnet_corpus.py --wordnet-dir /tmp/wordnet-base/usr/share/wordnet \
           --copyright-file /tmp/wordnet-base/usr/share/doc/wordnet-base/copyright \
           --out-dir ~/.cache/atlas-align/wordnet-full --cap-per-category 100000000

   Without ``--long-corpus`` the study looks for ``$ATLAS_ALIGN_LONG_CORPUS``, then
   ``~/.cache/atlas-align/wordnet-full/wordnet_corpus.jsonl.gz``, and runs ``DEFAULT_LONG_CURVE`` on it when found
   (not with ``--quick``); without either, section 1b is left out. quality.json records the file's sha256, its row and
   split counts, and tags the curve's records with ``"corpus": "wordnet-full (uncapped)"``.

Pooled activations go through the content-addressed activation cache
(``ATLAS_ALIGN_ACTIVATION_CACHE``), in fixed chunks of the train sample ([0, 1000) — the board's
train texts — then every 1,000; held-out: the board's 300, then the rest), so the board's cached rows are reused, each model runs each text once, and an
interrupted run resumes where it stopped. A raw MiniLM atlas is MiniLM's own pooled hidden states:
the rows cached for MiniLM as a subject.

    python scripts/quality_study.py                 # the committed docs/QUALITY.md when the long corpus is at its default place (the exact
                                                    # command is quality.json's "generated_by"): minutes with the rows cached, hours on 2 CPU cores without
    python scripts/quality_study.py --long-corpus FILE   # the same with the long corpus elsewhere
    python scripts/quality_study.py --rows-only --long-curve minilm:5:1000,50000 --long-corpus FILE   # pool (and cache) the long curve's rows only
    python scripts/quality_study.py --quick         # smoke run (MiniLM only, 400 texts; < 2 min), written to a temporary folder
    python scripts/quality_study.py --replot        # re-render QUALITY.md and the plots from docs/quality.json
    python scripts/quality_study.py --curve mpnet:11:1000,3000,10000,30000,all   # a longer curve (~3 MPNet texts/s on 2 shared cores)
    python scripts/quality_study.py --sae-atlases builtin:minilm-l3-wordnet-4k,/path/to/atlas-folder=L5   # more SAE atlases (1,300 MiniLM texts each)
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH, MAX_LENGTH = 16, 128  # as the board and `atlas-align eval` pool
BOARD_TRAIN, BOARD_HELDOUT = 1000, 300  # what leaderboard/ was built with (--samples 1000 --verify-samples 300): cached
DEFAULT_CURVES = ["mpnet:11:1000,2000,3000", "smollm2:14:1000,2000,3000", "gemma3-270m:17:1000,2000,3000"]  # what ~1 h of 2 shared CPU cores pooled
QUICK_CURVES = ["minilm:3:390,400"]
ATLAS = "builtin:minilm-l3-wordnet"  # the SAE atlas, loaded by its explicit name (the library's default atlas may change)
ATLAS_4K = "builtin:minilm-l3-wordnet-4k"  # the other shipped atlas (4,096 features, k 128): becoming the library's default
DEFAULT_SAE_ATLASES = f"{ATLAS},{ATLAS_4K}"  # --sae-atlases: both shipped atlases
BUILTIN_CORPUS = "builtin"
LONG_CORPUS = "wordnet-full (uncapped)"  # the "corpus" of the long curve's records
DEFAULT_LONG_CURVE = "minilm:5:1000,3000,10000,30000,50000,60000"  # MiniLM at block 5 is cheap (6 layers, 384 wide): a board pair
LONG_CORPUS_ENV = "ATLAS_ALIGN_LONG_CORPUS"
LONG_CORPUS_HOME = Path.home() / ".cache" / "atlas-align" / "wordnet-full" / "wordnet_corpus.jsonl.gz"
SUBJECT_MODELS = ["mpnet", "smollm2", "gemma3-270m", "qwen-coder-0.5b", "minilm"]
SAE = "sae"  # the atlas key of ATLAS's records; another SAE atlas's is "sae:<its name>" (see parse_sae_atlases)
# (key in a point's metrics, benchmark, metric in its result, label)
METRICS = [
    ("auroc_val", "translation", "auroc_validated", "translation AUROC, validated features"),
    ("auroc_all", "translation_all", "auroc", "translation AUROC, all eligible features"),
    ("ap_all", "translation_all", "ap", "translation AP, all eligible features"),
    ("ap_val", "translation", "ap_validated", "translation AP, validated features"),
    ("auroc_100", "translation", "auroc", "translation AUROC, 100 sampled features (the board's)"),
    ("ap_100", "translation", "ap", "translation AP, 100 sampled features (the board's)"),
    ("ret_mrr", "retrieval", "mrr", "retrieval MRR"),
    ("ret_mpp", "retrieval", "mpp", "retrieval MPP"),
    ("pairs_mrr", "pairs", "mrr", "pairs MRR"),
    ("pairs_top1", "pairs", "top1", "pairs top-1"),
]
PLOTTED = ["auroc_val", "auroc_all", "ap_all", "ret_mrr", "pairs_mrr"]
OWN_FEATURES = ("auroc_val", "ap_val", "ret_mrr", "ret_mpp")  # average over each SAE atlas's own validated features / concepts
LIKE_FOR_LIKE = ("auroc_all", "ap_all", "pairs_mrr")  # across SAE atlases: all eligible features / all held-out texts
LABEL = {key: label for key, _, _, label in METRICS}
# Forward-pass throughput measured when the committed rows were pooled (`--rows-only`, 2026-11-26, 2 CPU cores shared with
# 4 other jobs; batch 16, max length 128): texts, seconds. A default run finds every row cached and measures nothing.
POOLED_ROWS = {
    "atlas (MiniLM L3 + SAE)": (4000, 224),
    "mpnet (to block 11)": (2000, 601),
    "smollm2 (to block 14)": (2000, 579),
    "gemma3-270m (to block 17)": (2000, 741),
}
# The same for the long curve's rows (`--rows-only --long-curve minilm:5:1000,60000 --long-corpus ...`, 2026-11-26, one thread,
# 2 CPU cores shared with other jobs; the board had cached MiniLM block 5's held-out rows): texts, seconds.
POOLED_LONG = {
    "atlas (MiniLM L3 + SAE)": (60000, 344.4),
    "minilm (to block 5)": (60000, 451.3),
}
PAPER = {"auroc": "0.83–0.86", "ap": "0.43–0.49", "ret_mrr": "0.97"}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------ settings


def parse_sizes(text: str, n_train: int) -> list[int]:
    sizes = {n_train if s.strip().lower() == "all" else int(s) for s in text.split(",") if s.strip()}
    return sorted(min(s, n_train) for s in sizes)


def parse_curve(spec: str, n_train: int) -> tuple[str, int, list[int]]:
    name, layer, sizes = spec.split(":")
    return name, int(layer), parse_sizes(sizes, n_train)


def chunk_edges(n: int, step: int = 1000) -> list[int]:
    """Fixed chunk boundaries up to n: 0, 1000 (the board's train sample), 2000, 3000, ... then n."""
    return sorted({*range(0, n, step), n})


@dataclass(frozen=True)
class Point:
    subject: str
    layer: int
    atlas: str  # "sae" (ATLAS), "sae:<name>" (another SAE atlas, --sae-atlases) or "raw@L" (MiniLM layer L)
    method: str
    n: int
    corpus: str = BUILTIN_CORPUS  # BUILTIN_CORPUS or LONG_CORPUS: where the train texts came from


def parse_sae_atlases(text: str) -> dict[str, tuple[str, str | None]]:
    """'SPEC[=LABEL],...' → {atlas key: (spec, label or None)}, ATLAS first (always, key "sae").

    A spec is what ``load_atlas_space`` takes: a built-in name or an atlas folder. Its key is "sae" for ATLAS (so the records of
    earlier runs keep theirs), "sae:<folder name>" for a folder, else "sae:<spec>".
    """
    out: dict[str, tuple[str, str | None]] = {SAE: (ATLAS, None)}
    for item in filter(None, (x.strip() for x in text.split(","))):
        spec, _, label = item.partition("=")
        spec = spec.strip()
        folder = Path(spec).expanduser()
        key = SAE if spec == ATLAS else f"sae:{folder.name}" if folder.is_dir() else f"sae:{spec}"
        if key in out and out[key][0] != spec:
            raise ValueError(f"--sae-atlases: {spec} and {out[key][0]} would share the key {key}")
        out[key] = (spec, label.strip() or out.get(key, (None, None))[1])
    return out


def is_sae(atlas: str) -> bool:
    return atlas == SAE or atlas.startswith("sae:")


def atlas_name(atlas: str, study: dict | None = None) -> str:
    meta = (study or {}).get("sae_atlases", {}).get(atlas)
    if meta:
        return meta["label"]
    if is_sae(atlas):
        return "SAE (MiniLM L3)" if atlas == SAE else atlas
    return f"raw MiniLM L{atlas.split('@')[1]}"


def atlas_order(atlas: str, study: dict | None = None) -> str:
    """Sort key: raw atlases by layer, then the SAE atlases in --sae-atlases order (ATLAS first)."""
    order = list((study or {}).get("sae_atlases", {})) or [SAE]
    return f"1{order.index(atlas):04d}" if atlas in order else f"0{atlas}" if not is_sae(atlas) else f"2{atlas}"


def sae_label(key: str, spec: str, space) -> str:
    """Default name of an SAE atlas: its layer, width and k (+ "attempt" for a folder that is not a shipped atlas)."""
    c = space.atlas.config
    return f"SAE L{c.layer} {c.width:,}/k{c.training.k}" + ("" if spec.startswith("builtin") else " (attempt)")


def sae_meta(key: str, spec: str, label: str | None, space) -> dict:
    """What the study records about an SAE atlas: identity, shape, training and labels (atlas.json + labels.jsonl)."""
    from atlas_align.atlas.build import category_stats

    c = space.atlas.config
    cats = category_stats(space.labels)
    return {
        "spec": spec, "shipped": spec.startswith("builtin"), "id": space.ref.atlas_id, "revision": space.ref.revision, "name": c.name, "label": label or sae_label(key, spec, space),
        "model_id": c.model_id, "layer": c.layer, "hookpoint": c.hookpoint, "width": c.width, "k": c.training.k,
        "training_texts": c.corpus.n_train_texts, "corpus_train_tokens": c.corpus.n_train_tokens,
        "tokens_shown": c.training.steps * c.training.batch_tokens, "steps": c.training.steps, "explained_variance": c.training.explained_variance,
        "dead_features": c.training.dead_features, "dense_features": c.training.dense_features,
        "validated_features": len(space.labels.validated()), "categories_covered": cats["categories_covered"],
        "max_category": cats["max_category"], "max_share": round(cats["max_share"], 4),
    }  # fmt: skip


# ------------------------------------------------------------------------------------ activations


class Rows:
    """Pooled rows from the activation cache, computing (and caching) only the chunks it lacks."""

    def __init__(self, cache, board_hooks: dict[tuple[str, int], str]) -> None:
        from atlas_align.refs import PoolingConfig

        self.cache = cache
        self.board_hooks = board_hooks
        self.pooling = PoolingConfig()
        self._model: tuple[str, Any] | None = None
        self._spaces: dict[str, Any] = {}  # SAE atlas spaces by spec
        self.seconds: dict[str, float] = defaultdict(float)
        self.computed: dict[str, int] = defaultdict(int)

    def model(self, name: str):
        from atlas_align.models.loading import load_subject

        if self._model is None or self._model[0] != name:
            self._model = None
            gc.collect()
            self._model = (name, load_subject(name))
        return self._model[1]

    def hookpoint(self, name: str, layer: int) -> str:
        from atlas_align.models.activations import resolve_hookpoint
        from atlas_align.models.assets import canonical_model_id

        known = self.board_hooks.get((canonical_model_id(name), layer))
        return known or resolve_hookpoint(self.model(name)[0], layer).path

    def space(self, spec: str):
        """The SAE atlas ``spec`` (a built-in name or a folder), loaded once."""
        if spec not in self._spaces:
            from atlas_align.atlas.spaces import load_atlas_space

            space = load_atlas_space(spec, batch_size=BATCH, max_length=MAX_LENGTH)
            assert spec != ATLAS or space.ref.atlas_id == ATLAS, (space.ref.atlas_id, ATLAS)
            self._spaces[spec] = space
        return self._spaces[spec]

    @property
    def atlas(self):
        return self.space(ATLAS)

    def subject(self, name: str, layers: Sequence[int], chunks: Sequence[list[str]], label: str | None = None) -> dict[int, Any]:
        """{layer: (N, d) rows} over the concatenated chunks, one forward sweep per missing chunk."""
        import torch

        from atlas_align.models.activations import LayerSweepExtractor, resolve_hookpoint
        from atlas_align.models.assets import canonical_model_id
        from atlas_align.models.cache import subject_identity

        model_id = canonical_model_id(name)
        paths = {layer: self.hookpoint(name, layer) for layer in layers}
        parts: dict[int, list] = {layer: [] for layer in layers}
        for chunk in chunks:
            keys = {layer: self.cache.key(subject_identity(model_id, paths[layer], self.pooling, MAX_LENGTH), chunk) for layer in layers}
            got = {layer: self.cache.get(key) for layer, key in keys.items()}
            hits = sum(v is not None for v in got.values())
            self.cache.hits += hits
            self.cache.misses += len(got) - hits
            if any(v is None for v in got.values()):
                model, tokenizer, _ = self.model(name)
                hooks = [resolve_hookpoint(model, layer) for layer in layers]
                assert [h.path for h in hooks] == [paths[layer] for layer in layers], (hooks, paths)
                sweep = LayerSweepExtractor(model, tokenizer, hooks, batch_size=BATCH, max_length=MAX_LENGTH, pooling=self.pooling)
                start = time.perf_counter()
                pooled = torch.cat(list(sweep.pooled_batches(chunk)))
                seconds = time.perf_counter() - start
                self.seconds[label or name] += seconds
                self.computed[label or name] += len(chunk)
                say(f"  {name} @ blocks {list(layers)}: {len(chunk)} texts in {seconds:.0f}s ({len(chunk) / seconds:.1f} texts/s)")
                for j, layer in enumerate(layers):
                    got[layer] = pooled[:, j].contiguous()
                    if torch.isfinite(got[layer]).all():
                        self.cache.put(keys[layer], got[layer])
            for layer in layers:
                parts[layer].append(got[layer])
        return {layer: torch.cat(parts[layer]) for layer in layers}

    def atlas_rows(self, chunks: Sequence[list[str]], label: str = "atlas (MiniLM L3 + SAE)", space=None):
        """An SAE atlas's pooled rows (ATLAS unless ``space``), cached under its atlas id + revision, chunk by chunk."""
        import torch

        from atlas_align.models.cache import atlas_identity

        space = space if space is not None else self.atlas
        out = []
        for chunk in chunks:
            misses = self.cache.misses
            start = time.perf_counter()
            out.append(self.cache.pooled(space, atlas_identity(space.ref.atlas_id, space.ref.revision, MAX_LENGTH), chunk))
            if self.cache.misses > misses:
                seconds = time.perf_counter() - start
                self.seconds[label] += seconds
                self.computed[label] += len(chunk)
                say(f"  {label}: {len(chunk)} texts in {seconds:.0f}s ({len(chunk) / seconds:.1f} texts/s)")
        return torch.cat(out)

    def release(self) -> None:
        self._model = None
        gc.collect()


# ------------------------------------------------------------------------------------ fitting and scoring


def snapshots(subject, atlas, sizes: Sequence[int]) -> dict[int, Any]:
    """One streaming pass of AlignmentStatistics over the rows, a copy kept at every size."""
    from atlas_align.fit.statistics import AlignmentStatistics

    stats = AlignmentStatistics(subject.shape[1], atlas.shape[1], False)
    out, position = {}, 0
    for n in sorted(sizes):
        for start in range(position, n, 256):
            stop = min(start + 256, n)
            stats.update(subject[start:stop].double(), atlas[start:stop].double())
        position = n
        out[n] = copy.deepcopy(stats)
    return out


@dataclass
class Scorer:
    heldout: list  # Samples, as the verifier draws them (duplicates kept)
    atlas_ref: Any
    atlas_labels: Any
    seed: int = 0
    records: list[dict] = field(default_factory=list)

    def score(self, point: Point, stats, subject_ref, atlas_space, heldout_subject: dict, heldout_atlas: dict, corpus=None) -> dict:
        from atlas_align.alignment.pipeline import _wrap
        from atlas_align.corpus.sources import CorpusConfig
        from atlas_align.harness.benchmarks import BenchmarkContext
        from atlas_align.harness.benchmarks.synthetic import InMemorySpace
        from atlas_align.harness.evaluation import run_benchmarks
        from atlas_align.refs import CorpusRef, PoolingConfig

        corpus = corpus or CorpusConfig()
        corpus_ref = CorpusRef(source=corpus.source, n_samples=point.n, window_words=corpus.window_words, heldout_fraction=corpus.heldout_fraction,
                               split_salt=corpus.split_salt, sampling=corpus.sampling, sample_seed=corpus.sample_seed)  # fmt: skip
        alignment = _wrap(point.method, {}, stats, subject_ref, atlas_space, corpus_ref, PoolingConfig())
        ctx = BenchmarkContext(alignment=alignment, subject=InMemorySpace(heldout_subject), atlas=InMemorySpace(heldout_atlas, ref=atlas_space.ref, labels=atlas_space.labels),
                               heldout=self.heldout, seed=self.seed)  # fmt: skip
        skipped: dict[str, str] = {}
        results = run_benchmarks(ctx, ("translation", "retrieval", "pairs"), skipped=skipped)
        results = {key.split("@")[0]: value for key, value in results.items()}
        results["translation_all"] = run_benchmarks(ctx, ("translation",), {"translation": {"n_features": alignment.config.d_c}})["translation@2"]
        metrics = {}
        for key, bench, name, _ in METRICS:
            result = results.get(bench)
            if result is not None and name in result.metrics:
                metrics[key] = {"value": result.metrics[name], "control": result.controls.get(name), "chance": result.chance.get(name)}
        extra = {
            "n_validated": results["translation"].metrics.get("n_validated"),
            "n_eligible": results["translation_all"].metrics.get("n_features"),
            "n_concepts": results["retrieval"].metrics.get("n_concepts") if "retrieval" in results else None,
            "n_pairs": results["pairs"].metrics.get("n_texts"),
        }
        return {"subject": point.subject, "model_id": subject_ref.model_id, "layer": point.layer, "hookpoint": subject_ref.hookpoint, "atlas": point.atlas,
                "method": point.method, "n_train": point.n, "corpus": point.corpus, "metrics": metrics, **extra, "skipped": skipped}  # fmt: skip


# ------------------------------------------------------------------------------------ the study


def board_info(path: Path) -> tuple[dict, dict, dict]:
    """(hookpoints by (model id, layer), best layer per model id, board metrics by (model id, layer, method))."""
    board = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"rows": []}
    hooks, best, metrics = {}, {}, {}
    for row in board["rows"]:
        hooks[(row["subject_model"], row["layer"])] = row["hookpoint"]
        metrics[(row["subject_model"], row["layer"], row["method"])] = row["metrics"]
        if row["method"] == "procrustes" and row["metrics"].get("mrr") is not None:
            held = best.get(row["subject_model"])
            if held is None or row["metrics"]["mrr"] > held[1]:
                best[row["subject_model"]] = (row["layer"], row["metrics"]["mrr"], row.get("depth"))
    return hooks, best, metrics


def run_study(args) -> dict:
    import torch

    from atlas_align.corpus.sources import CorpusConfig, iter_samples
    from atlas_align.errors import DegenerateDataError
    from atlas_align.harness.benchmarks.synthetic import InMemorySpace
    from atlas_align.harness.evaluation import heldout_samples
    from atlas_align.leaderboard.verify import VERIFY_SEED
    from atlas_align.models.assets import canonical_model_id
    from atlas_align.models.cache import ActivationCache
    from atlas_align.refs import AtlasRef, SubjectRef, raw_atlas_id

    started = time.perf_counter()
    cache = ActivationCache(args.cache)
    hooks, best, board_metrics = board_info(REPO / "leaderboard" / "leaderboard.json")
    rows = Rows(cache, hooks)
    corpus = CorpusConfig()
    methods = args.methods.split(",")
    n_all = args.n_train_split
    curves = [parse_curve(spec, n_all) for spec in args.curve]
    if args.subjects:
        subjects = {name: int(layer) for name, layer in (s.split(":") for s in args.subjects.split(","))}
    else:
        subjects = {name: best[canonical_model_id(name)][0] for name in SUBJECT_MODELS}
    raw_layers = [int(x) for x in args.raw_atlas_layers.split(",") if x]
    sae_specs = args.sae_atlases_parsed  # {atlas key: (spec, label)}, SAE (ATLAS) first
    extra_sae = [key for key in sae_specs if key != SAE]
    n_subject = args.subject_n
    max_n = max([n_subject] + [max(sizes) for _, _, sizes in curves])
    say(f"drawing the train sample (first {max_n}) and {args.heldout} held-out texts ...")
    train = [s.text for s in iter_samples(corpus, "train", limit=max_n)]
    heldout = heldout_samples(corpus, args.heldout, VERIFY_SEED)
    heldout_texts = list(dict.fromkeys(s.text for s in heldout))
    chunks = chunker(train)
    long = args.long_curve_parsed  # (name, layer, sizes) or None
    if long:
        long_cfg = long_corpus_config(args.long_corpus)
        say(f"drawing the long curve's train sample (first {max(long[2])} of {args.n_long_train_split:,}) from {args.long_corpus} ...")
        long_train = [s.text for s in iter_samples(long_cfg, "train", limit=max(long[2]))]
        overlap = set(heldout_texts) & set(long_train)
        assert not overlap, f"{len(overlap)} held-out texts are among the long curve's train texts: {sorted(overlap)[:3]}"
        long_chunks = chunker(long_train)

    # The board verified on the first BOARD_HELDOUT of this sample (cached): a longer sample reuses them.
    heldout_chunks = [heldout_texts[a:b] for a, b in zip(*[sorted({0, min(BOARD_HELDOUT, len(heldout_texts)), len(heldout_texts)})[i:] for i in (0, 1)])]

    # Which points, and on which axes.
    axes: dict[Point, set[str]] = defaultdict(set)
    for name, layer, sizes in curves:
        for n in sizes:
            for method in methods:
                axes[Point(name, layer, SAE, method, n)].add("texts")
    for name, layer in subjects.items():
        for method in methods:
            axes[Point(name, layer, SAE, method, n_subject)].update({"subject", "atlas"})
            for raw in raw_layers:
                axes[Point(name, layer, f"raw@{raw}", method, n_subject)].add("atlas")
            for key in extra_sae:
                axes[Point(name, layer, key, method, n_subject)].add("atlas")

    # Rows: the atlas side grows with the subjects' N (chunks are cached, so it is pooled once per text).
    atlas_space = rows.atlas
    sae_heldout = rows.atlas_rows(heldout_chunks)
    sae_info = {key: sae_meta(key, spec, label, rows.space(spec)) for key, (spec, label) in sae_specs.items()}
    sae_rows_label = {key: f"atlas ({sae_info[key]['label']})" for key in extra_sae}

    def extra_sae_rows() -> tuple[dict, dict]:
        """Each extra SAE atlas's rows on the subjects' N train texts and the held-out texts (MiniLM forwards, cached per atlas id + revision)."""
        train, held = {}, {}
        for key in extra_sae:
            space = rows.space(sae_specs[key][0])
            say(f"SAE atlas {sae_info[key]['label']} ({space.ref.atlas_id}): rows for {n_subject} train + {len(heldout_texts)} held-out texts ...")
            train[key] = rows.atlas_rows(chunks(n_subject), label=sae_rows_label[key], space=space)
            held[key] = rows.atlas_rows(heldout_chunks, label=sae_rows_label[key], space=space)
        return train, held

    long_label = {"atlas": "atlas (MiniLM L3 + SAE), long curve"}
    if long:
        long_label["subject"] = f"{long[0]} (to block {long[1]}), long curve"

    def long_rows(n: int):
        """The long curve's (subject, atlas) train rows up to n, pooled chunk by chunk (atlas, then subject), so a stop keeps whole pairs."""
        name, layer, _ = long
        s_parts, a_parts = [], []
        for i, chunk in enumerate(long_chunks(n)):
            a_parts.append(rows.atlas_rows([chunk], label=long_label["atlas"]))
            s_parts.append(rows.subject(name, [layer], [chunk], label=long_label["subject"])[layer])
            if (i + 1) % 10 == 0:
                say(f"  long curve: rows for {sum(len(p) for p in s_parts):,} of {n:,} texts")
        return torch.cat(s_parts), torch.cat(a_parts)

    if args.rows_only:  # pool (and cache) what the curves need, in the order given, and stop
        for name, layer, sizes in curves:
            say(f"rows for {name} block {layer} up to N = {max(sizes)} ...")
            rows.atlas_rows(chunks(max(sizes)))
            rows.subject(name, [layer], chunks(max(sizes)))
            rows.subject(name, [layer], heldout_chunks)
        extra_sae_rows()
        if long:
            say(f"rows for the long curve, {long[0]} block {long[1]} up to N = {max(long[2]):,} ({LONG_CORPUS}) ...")
            rows.subject(long[0], [long[1]], heldout_chunks, label=long_label["subject"])
            long_rows(max(long[2]))
        return {"throughput": throughput(rows), "seconds": dict(rows.seconds)}
    raw_train, raw_heldout = {}, {}
    if raw_layers:
        say(f"raw MiniLM layers {raw_layers} (MiniLM's own pooled rows) ...")
        raw_train = rows.subject("minilm", raw_layers, chunks(n_subject))
        raw_heldout = rows.subject("minilm", raw_layers, heldout_chunks)
    extra_train, extra_heldout = extra_sae_rows()
    minilm_id = canonical_model_id("minilm")
    raw_spaces = {
        raw: InMemorySpace({heldout_texts[0]: raw_heldout[raw][0]}, ref=AtlasRef(atlas_id=raw_atlas_id(minilm_id, rows.hookpoint("minilm", raw)), model_id=minilm_id,
                                                                            hookpoint=rows.hookpoint("minilm", raw), kind="raw"))
        for raw in raw_layers
    }  # fmt: skip
    scorer = Scorer(heldout=heldout, atlas_ref=atlas_space.ref, atlas_labels=atlas_space.labels)
    records = []
    names = {"sae_atlases": sae_info}

    def fit_and_score(mine: list[Point], s_train, a_train, subject_ref, space, s_heldout: dict, a_heldout: dict, corpus_cfg=None) -> None:
        """One streaming pass of statistics over the train rows, every point (N, method) fitted from its snapshot and scored."""
        start = time.perf_counter()
        stats = snapshots(s_train, a_train, sorted({p.n for p in mine}))
        for point in sorted(mine, key=lambda p: (p.n, p.method)):
            try:
                record = scorer.score(point, stats[point.n], subject_ref, space, s_heldout, a_heldout, corpus_cfg)
            except DegenerateDataError as exc:  # too few texts for this method's widths
                say(f"  {atlas_name(point.atlas, names):<16} {point.method:<11} N={point.n:<6} not fitted: {exc}")
                continue
            record["axes"] = sorted(axes[point])
            records.append(record)
            m = record["metrics"]
            shown = "  ".join(f"{k} {m[k]['value']:.3f}" for k in PLOTTED if k in m)
            say(f"  {atlas_name(point.atlas, names):<16} {point.method:<11} N={point.n:<6} {shown}")
        say(f"  fitted and scored {len(mine)} points in {time.perf_counter() - start:.0f}s")

    by_subject: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for point in axes:
        by_subject[(point.subject, point.layer)].append(point)
    order = [(name, layer) for name, layer, _ in curves] + [(n, layer) for n, layer in subjects.items()]
    for name, layer in list(dict.fromkeys(order)):
        points = by_subject[(name, layer)]
        need = max(p.n for p in points)
        say(f"{name} block {layer}: rows for {need} train + {len(heldout_texts)} held-out texts ...")
        sae_train = rows.atlas_rows(chunks(need))
        s_train = rows.subject(name, [layer], chunks(need))[layer]
        s_heldout = dict(zip(heldout_texts, rows.subject(name, [layer], heldout_chunks)[layer]))
        model_id = canonical_model_id(name)
        depth = best.get(model_id, (None, None, None))[2]
        n_layers = round(layer / depth) + 1 if depth else None
        subject_ref = SubjectRef(model_id=model_id, hookpoint=rows.hookpoint(name, layer), layer=layer, n_layers=n_layers)
        for atlas in sorted({p.atlas for p in points}):
            mine = [p for p in points if p.atlas == atlas]
            if atlas == SAE:
                a_train, a_heldout, space = sae_train, sae_heldout, atlas_space
            elif is_sae(atlas):
                a_train, a_heldout, space = extra_train[atlas], extra_heldout[atlas], rows.space(sae_specs[atlas][0])
            else:
                raw = int(atlas.split("@")[1])
                a_train, a_heldout, space = raw_train[raw], raw_heldout[raw], raw_spaces[raw]
            fit_and_score(mine, s_train, a_train, subject_ref, space, s_heldout, dict(zip(heldout_texts, a_heldout)))
        rows.release()
        del s_train
        gc.collect()

    long_info = None
    if long:
        name, layer, sizes = long
        say(f"long curve: {name} block {layer}, rows for {max(sizes):,} train texts of {LONG_CORPUS} + {len(heldout_texts)} held-out texts ...")
        s_heldout = dict(zip(heldout_texts, rows.subject(name, [layer], heldout_chunks, label=long_label["subject"])[layer]))
        s_train, a_train = long_rows(max(sizes))
        model_id = canonical_model_id(name)
        depth = best.get(model_id, (None, None, None))[2]
        subject_ref = SubjectRef(model_id=model_id, hookpoint=rows.hookpoint(name, layer), layer=layer, n_layers=round(layer / depth) + 1 if depth else None)
        points = [Point(name, layer, SAE, method, n, LONG_CORPUS) for n in sizes for method in methods]
        for point in points:
            axes[point].add("texts-long")
        fit_and_score(points, s_train, a_train, subject_ref, atlas_space, s_heldout, dict(zip(heldout_texts, sae_heldout)), long_cfg)
        builtin_train = {s.text for s in iter_samples(corpus, "train")}
        long_info = {
            "subject": name, "layer": layer, "sizes": sizes, "corpus": LONG_CORPUS, **args.long_corpus_info,
            "window_words": long_cfg.window_words, "heldout_fraction": long_cfg.heldout_fraction, "split_salt": long_cfg.split_salt,
            "sampling": f"{long_cfg.sampling}, seed {long_cfg.sample_seed}",
            "heldout_in_train": 0,  # asserted above: none of the scored held-out texts is a long-curve train text
            "shared_with_builtin_train": sum(t in builtin_train for t in long_train),
        }  # fmt: skip
        rows.release()
        del s_train, a_train
        gc.collect()

    board_check = []
    for r in records:
        if r["atlas"] == SAE and r["n_train"] == BOARD_TRAIN and len(heldout) == BOARD_HELDOUT and r["corpus"] == BUILTIN_CORPUS:
            board = board_metrics.get((r["model_id"], r["layer"], r["method"]))
            if board:
                pairs = [("auroc_100", "auroc"), ("ap_100", "ap"), ("ret_mrr", "mrr"), ("ret_mpp", "mpp")]
                diffs = {
                    mine: abs(r["metrics"][mine]["value"] - board[theirs]) for mine, theirs in pairs if mine in r["metrics"] and board.get(theirs) is not None
                }
                board_check.append(
                    {"subject": r["subject"], "layer": r["layer"], "method": r["method"], "max_abs_diff": max(diffs.values()) if diffs else None}
                )
    return {
        "generated_by": "scripts/quality_study.py " + " ".join(args.argv),
        "corpus": "builtin WordNet windows (48 words), uniform seeded sample of the train split (a prefix of one sample for every N)",
        "n_train_split": n_all,
        "heldout": {"n": len(heldout), "distinct": len(heldout_texts), "seed": VERIFY_SEED, "note": "the board verifier's held-out sample"},
        "atlas": {"id": atlas_space.ref.atlas_id, "width": atlas_space.width, "validated_features": len(atlas_space.labels.validated())},
        "sae_atlases": sae_info,
        "methods": methods,
        "curves": [{"subject": n, "layer": layer, "sizes": sizes, "corpus": BUILTIN_CORPUS} for n, layer, sizes in curves],
        "long_curve": long_info,
        "subjects": subjects,
        "subject_n": n_subject,
        "raw_atlas_layers": raw_layers,
        "records": records,
        "board_check": board_check,
        "throughput": throughput(rows),
        "cache": {"hits": cache.hits, "misses": cache.misses},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "pooling_before_after": pooling_summary(REPO / "docs" / "pooling.json"),
    }


def throughput(rows: Rows) -> dict:
    return {name: {"texts": rows.computed[name], "seconds": round(rows.seconds[name], 1), "texts_per_s": round(rows.computed[name] / rows.seconds[name], 2)}
            for name in rows.seconds if rows.seconds[name] > 0}  # fmt: skip


def chunker(texts: list[str]) -> Callable[[int], list[list[str]]]:
    """n → the first n texts in the fixed chunks of :func:`chunk_edges` (what the activation cache is keyed by)."""
    edges = chunk_edges(len(texts))

    def chunks(n: int) -> list[list[str]]:
        cut = [e for e in edges if e < n] + [n]
        return [texts[a:b] for a, b in zip(cut, cut[1:])]

    return chunks


def long_corpus_config(path: str):
    """The default CorpusConfig (window_words, heldout_fraction, split_salt, sampling) on another corpus file."""
    from atlas_align.corpus.sources import CorpusConfig

    default = CorpusConfig()
    return default.model_copy(update={"source": str(Path(path).expanduser().resolve())})


def long_corpus_info(path: str) -> dict:
    """What identifies the long curve's corpus: sha256, rows, windows per split."""
    import gzip
    import hashlib

    from atlas_align.corpus.sources import iter_samples

    cfg = long_corpus_config(path)
    file = Path(cfg.source)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as handle:
        n_rows = sum(1 for line in handle if line.strip())
    return {
        "file": file.name, "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "rows": n_rows,
        "n_train_split": sum(1 for _ in iter_samples(cfg, "train")), "n_heldout_split": sum(1 for _ in iter_samples(cfg, "heldout")),
    }  # fmt: skip


def pooling_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    before, after = "plain (specials masked)", "drop first + norm > 5× median"
    out = {"train": data.get("train"), "heldout": data.get("heldout"), "before": before, "after": after, "models": {}}
    for name, model in data.get("models", {}).items():
        rules = model["rules"]
        out["models"][name] = {
            "layer": model.get("layer"), "first_token_norm_over_median": model.get("first_token_norm_over_median"),
            "before": rules[before]["centred"], "after": rules[after]["centred"],
        }  # fmt: skip
    return out


# ------------------------------------------------------------------------------------ plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    _plt().close(fig)
    tmp.replace(path)
    return path


COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568"]


def plot_texts(study: dict, path: Path, axis: str = "texts", specs: list[dict] | None = None, title: str | None = None) -> Path:
    plt = _plt()
    specs = study["curves"] if specs is None else specs
    recs = [r for r in study["records"] if axis in r["axes"]]
    curves = [(c["subject"], c["layer"]) for c in specs]
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(3.3 * len(PLOTTED), 3.4), dpi=100)
    for ax, key in zip(axes, PLOTTED):
        chance_seen = control_seen = False
        for i, (name, layer) in enumerate(curves):
            for method, style in (("procrustes", "-"), ("correlation", ":")):
                pts = sorted(
                    (r["n_train"], r["metrics"][key])
                    for r in recs
                    if r["subject"] == name and r["layer"] == layer and r["method"] == method and key in r["metrics"]
                )
                if not pts:
                    continue
                xs = [n for n, _ in pts]
                ax.plot(xs, [m["value"] for _, m in pts], style, marker="o", ms=3, color=COLORS[i % len(COLORS)], label=f"{name} L{layer} {method}")
                if method == "procrustes":
                    ax.plot(xs, [m["control"] for _, m in pts], "--", color="#a0aec0", lw=1, label=None if control_seen else "shuffled-T control")
                    ax.plot(xs, [m["chance"] for _, m in pts], ":", color="black", lw=1, label=None if chance_seen else "chance")
                    control_seen = chance_seen = True
        ax.set_xscale("log")
        ticks = sorted({n for c in specs for n in c["sizes"]})
        ax.set_xticks(ticks, [f"{n / 1000:g}k" if n >= 1000 else str(n) for n in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("shared training texts N")
        ax.set_title(LABEL[key], fontsize=8)
        shown = [y for line in ax.get_lines() for y in line.get_ydata() if y is not None and math.isfinite(y)]
        ax.set_ylim(max(0.0, min(shown, default=0.0) - 0.05), min(1.02, max(shown, default=1.0) + 0.05))
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="lower center", ncol=min(len(labels), 5))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.14, 1, 0.94 if title else 1))
    return _save(fig, path)


def plot_texts_long(study: dict, path: Path) -> Path:
    lc = study["long_curve"]
    return plot_texts(study, path, "texts-long", [lc], title=f"{lc['subject']} block {lc['layer']} vs the SAE atlas, train texts from the {lc['corpus']} WordNet corpus "
                      f"({lc['n_train_split']:,} train windows); scored on the board's held-out texts")  # fmt: skip


def _bars(ax, groups: list[str], series: list[tuple[str, list[dict | None]]], title: str) -> None:
    """Grouped bars (one series per colour), each with its own shuffled-T control (—) and chance (×)."""
    import numpy as np

    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    nan = float("nan")
    for j, (label, cells) in enumerate(series):
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, [c["value"] if c else 0.0 for c in cells], width=width, color=COLORS[j % len(COLORS)], label=label, edgecolor="#4a5568", linewidth=0.4)
        ax.scatter(pos, [c["control"] if c else nan for c in cells], marker="_", s=60, color="black", zorder=3, label="shuffled-T control" if j == 0 else None)
        ax.scatter(pos, [c["chance"] if c else nan for c in cells], marker="x", s=18, color="#e53e3e", zorder=4, label="chance" if j == 0 else None)
    ax.set_xticks(x, groups, fontsize=7, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)


def plot_subjects(study: dict, path: Path) -> Path:
    plt = _plt()
    recs = [r for r in study["records"] if "subject" in r["axes"]]
    names = list(study["subjects"])
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(3.3 * len(PLOTTED), 3.4), dpi=100)
    for ax, key in zip(axes, PLOTTED):
        series = [
            (method, [next((r["metrics"].get(key) for r in recs if r["subject"] == n and r["method"] == method), None) for n in names])
            for method in study["methods"]
        ]
        _bars(ax, [f"{n} L{study['subjects'][n]}" for n in names], series, LABEL[key])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="lower center", ncol=len(labels))
    fig.suptitle(f"subjects at their best board layer, SAE atlas, N = {study['subject_n']} shared texts", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save(fig, path)


def _atlas_bars(study: dict, path: Path, atlases: list[str], keys: list[str], size: tuple[float, float], title: str, top: float, star: bool) -> Path:
    """Each metric in ``keys`` per subject (best layer) per atlas in ``atlases`` (Procrustes), bars with control and chance."""
    plt = _plt()
    recs = [r for r in study["records"] if "atlas" in r["axes"] and r["method"] == "procrustes"]
    names = list(study["subjects"])
    fig, axes = plt.subplots(1, len(keys), figsize=(size[0] * len(keys), size[1]), dpi=100)
    for ax, key in zip(axes, keys):
        series = [
            (atlas_name(atlas, study), [next((r["metrics"].get(key) for r in recs if r["subject"] == n and r["atlas"] == atlas), None) for n in names])
            for atlas in atlases
        ]
        _bars(ax, [f"{n} L{study['subjects'][n]}" for n in names], series, LABEL[key] + (" *" if star and key in OWN_FEATURES else ""))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="lower center", ncol=len(labels))
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, top))
    return _save(fig, path)


def plot_atlas(study: dict, path: Path) -> Path:
    title = (f"atlas: the built-in {study['atlas']['width']:,}-feature SAE vs raw MiniLM layers (Procrustes, N = {study['subject_n']}); "
             "raw-atlas AUROC/AP are over raw dimensions, not SAE features")  # fmt: skip
    return _atlas_bars(study, path, [SAE] + [f"raw@{raw}" for raw in study["raw_atlas_layers"]], ["auroc_all", "ap_all", "pairs_mrr"], (4.6, 3.6), title, 0.94, False)


def plot_atlases(study: dict, path: Path) -> Path:
    """Every plotted metric per subject per SAE atlas (Procrustes), each bar with its shuffled-T control and chance."""
    title = (f"SAE atlases (Procrustes, N = {study['subject_n']}). * averages over each atlas's own validated features / concepts, "
             "so it compares different feature sets across atlases; all-feature AUROC/AP and pairs MRR use all of each atlas's")  # fmt: skip
    return _atlas_bars(study, path, list(study["sae_atlases"]), PLOTTED, (3.5, 3.7), title, 0.93, True)


# ------------------------------------------------------------------------------------ report


def _f(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _cell(m: dict | None) -> str:
    return "—" if not m else f"{_f(m['value'])} ({_f(m['control'])} / {_f(m['chance'])})"


def find(study: dict, **want) -> dict | None:
    for r in study["records"]:
        if all(r.get(k, BUILTIN_CORPUS if k == "corpus" else None) == v for k, v in want.items()):
            return r
    return None


def _value(study: dict, key: str, corpus: str = BUILTIN_CORPUS, **want) -> float | None:
    r = find(study, corpus=corpus, **want)
    return r["metrics"][key]["value"] if r and key in r["metrics"] else None


def effects(study: dict) -> dict[str, dict[str, dict[str, Any]]]:
    """Per plotted metric and factor, the changes that factor makes (Procrustes, SAE atlas unless the factor is the atlas).

    texts: per curve, value at its largest N minus value at its smallest; texts_long: the same for the long curve (uncapped
    corpus; not one of the three factors, whose ranges it would not match); subject: the real subjects' range at the
    subject-axis N; atlas: raw MiniLM L3 minus SAE per real subject — pairs MRR only, the one metric that is the same task
    on both atlases (over raw dimensions translation AUROC/AP score another task, with AP chance ~0.96); "sae:<name>"
    (one per extra SAE atlas, see :func:`sae_swaps`): that SAE atlas minus the 1,536-feature one per real subject, every
    metric, with their "mean"; method: correlation minus Procrustes per real subject (not one of the three factors; shown
    for scale). "largest" is the change of largest magnitude.
    """
    n0 = study["subject_n"]
    real = [n for n in study["subjects"] if n != "minilm"]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key in PLOTTED:
        row: dict[str, dict[str, Any]] = {}
        deltas = {}
        for c in study["curves"]:
            lo, hi = min(c["sizes"]), max(c["sizes"])
            a = _value(study, key, subject=c["subject"], layer=c["layer"], atlas=SAE, method="procrustes", n_train=lo)
            b = _value(study, key, subject=c["subject"], layer=c["layer"], atlas=SAE, method="procrustes", n_train=hi)
            if a is not None and b is not None:
                deltas[f"{c['subject']} {lo / 1000:g}k → {hi / 1000:g}k"] = b - a
        if deltas:
            row["texts"] = {"deltas": deltas}
        lc = study.get("long_curve")
        if lc:
            lo, hi = min(lc["sizes"]), max(lc["sizes"])
            a, b = (
                _value(study, key, corpus=lc["corpus"], subject=lc["subject"], layer=lc["layer"], atlas=SAE, method="procrustes", n_train=n) for n in (lo, hi)
            )
            if a is not None and b is not None:
                row["texts_long"] = {"deltas": {f"{lc['subject']} L{lc['layer']} {lo / 1000:g}k → {hi / 1000:g}k": b - a}, "a": a, "b": b}
        vals = {n: _value(study, key, subject=n, layer=study["subjects"][n], atlas=SAE, method="procrustes", n_train=n0) for n in real}
        vals = {n: v for n, v in vals.items() if v is not None}
        if len(vals) > 1:
            lo, hi = min(vals, key=vals.get), max(vals, key=vals.get)
            row["subject"] = {"deltas": {f"{lo} → {hi}": vals[hi] - vals[lo]}, "low": lo, "high": hi}
        if key == "pairs_mrr" and 3 in study["raw_atlas_layers"]:
            deltas = {}
            for n in real:
                sae = _value(study, key, subject=n, layer=study["subjects"][n], atlas=SAE, method="procrustes", n_train=n0)
                raw = _value(study, key, subject=n, layer=study["subjects"][n], atlas="raw@3", method="procrustes", n_train=n0)
                if sae is not None and raw is not None:
                    deltas[n] = raw - sae
            if deltas:
                row["atlas"] = {"deltas": deltas}
        for atlas in sae_swaps(study):
            deltas, chance = {}, []
            for n in real:
                base = find(study, subject=n, layer=study["subjects"][n], atlas=SAE, method="procrustes", n_train=n0)
                other = find(study, subject=n, layer=study["subjects"][n], atlas=atlas, method="procrustes", n_train=n0)
                if base and other and key in base["metrics"] and key in other["metrics"]:
                    deltas[n] = other["metrics"][key]["value"] - base["metrics"][key]["value"]
                    if other["metrics"][key]["chance"] is not None and base["metrics"][key]["chance"] is not None:
                        chance.append(other["metrics"][key]["chance"] - base["metrics"][key]["chance"])
            if deltas:
                row[atlas] = {"deltas": deltas, "mean": sum(deltas.values()) / len(deltas), "chance_mean": sum(chance) / len(chance) if chance else None}
        if "correlation" in study["methods"]:
            deltas = {}
            for n in real:
                proc = _value(study, key, subject=n, layer=study["subjects"][n], atlas=SAE, method="procrustes", n_train=n0)
                corr = _value(study, key, subject=n, layer=study["subjects"][n], atlas=SAE, method="correlation", n_train=n0)
                if proc is not None and corr is not None:
                    deltas[n] = corr - proc
            if deltas:
                row["method"] = {"deltas": deltas}
        for cell in row.values():
            largest = max(cell["deltas"], key=lambda k: abs(cell["deltas"][k]))
            cell["largest"], cell["where"] = cell["deltas"][largest], largest
            cell["lo"], cell["hi"] = min(cell["deltas"].values()), max(cell["deltas"].values())
        out[key] = row
    return out


def sae_swaps(study: dict) -> list[str]:
    """The atlas keys of the extra SAE atlases (all but the 1,536-feature one), in --sae-atlases order."""
    return [key for key in study.get("sae_atlases", {}) if key != SAE]


FACTORS = ("texts", "subject", "atlas")
SHORT = {"auroc_val": "validated-feature AUROC", "auroc_all": "all-feature AUROC", "ap_all": "AP", "ret_mrr": "retrieval MRR", "pairs_mrr": "pairs MRR"}


def factor_size(key: str, row: dict, factor: str) -> float | None:
    """The largest change one factor made to one metric; the atlas factor counts the raw swap and, for the like-for-like metrics
    (all-feature AUROC/AP, pairs MRR), every SAE-atlas swap that leaves the metric's chance where it was (validated-feature AUROC
    and retrieval MRR average over each atlas's own features / concepts; all-feature AP's chance is the features' positive rate,
    which the atlas sets: neither compares across atlases)."""
    cells = [row[factor]] if factor in row else []
    if factor == "atlas" and key in LIKE_FOR_LIKE:
        cells += [cell for f, cell in row.items() if f.startswith("sae:") and abs(cell.get("chance_mean") or 0.0) < 5e-4]
    return max((abs(c["largest"]) for c in cells), default=None)


def winners(eff: dict) -> dict[str, str]:
    """Per metric, which of texts / subject / atlas made the largest change."""
    out = {}
    for key, row in eff.items():
        sizes = {f: factor_size(key, row, f) for f in FACTORS}
        present = [f for f in FACTORS if sizes[f] is not None]
        if present:
            out[key] = max(present, key=lambda f: sizes[f])
    return out


def _span(cell: dict) -> str:
    return f"{cell['lo']:+.3f}" if len(cell["deltas"]) == 1 or abs(cell["hi"] - cell["lo"]) < 5e-4 else f"{cell['lo']:+.3f} to {cell['hi']:+.3f}"


def conclusion(study: dict, eff: dict) -> list[str]:
    """Three sentences (texts, subject, atlas), every number read off ``eff``."""
    win = winners(eff)

    def wins(factor: str) -> str:
        keys = [SHORT[k] for k, f in win.items() if f == factor]
        return ("it is the largest of the three factors for " + ", ".join(keys)) if keys else "it is the largest factor for none of the metrics"

    n0 = study["subject_n"]
    sentences = []
    texts = {k: row["texts"] for k, row in eff.items() if "texts" in row}
    if texts:
        sizes = sorted({n for c in study["curves"] for n in c["sizes"]})
        sentences.append(
            f"**Texts** — going from {sizes[0]:,} to {sizes[-1]:,} shared texts changes "
            + ", ".join(f"{SHORT[k]} by {_span(c)}" for k, c in texts.items())
            + f" across the {len(study['curves'])} subjects measured; {wins('texts')}."
        )
    longs = {k: row["texts_long"] for k, row in eff.items() if "texts_long" in row}
    if longs:
        lc = study["long_curve"]
        sentences.append(
            f"On the uncapped WordNet corpus ({lc['subject']} block {lc['layer']}, section 1b), going from {min(lc['sizes']):,} to {max(lc['sizes']):,} texts changes "
            + ", ".join(f"{SHORT[k]} by {c['largest']:+.3f} ({c['a']:.3f} → {c['b']:.3f})" for k, c in longs.items())
            + "."
        )
    subj = {k: row["subject"] for k, row in eff.items() if "subject" in row}
    if subj:
        sentences.append(
            f"**Subject** — at N = {n0:,} the {len([n for n in study['subjects'] if n != 'minilm'])} real subjects span "
            + ", ".join(f"{c['largest']:.3f} in {SHORT[k]} ({c['low']} → {c['high']})" for k, c in subj.items())
            + f"; {wins('subject')}."
        )
    atlas = eff.get("pairs_mrr", {}).get("atlas")
    swaps = [a for a in sae_swaps(study) if any(a in row for row in eff.values())]
    if atlas or swaps:
        parts = []
        if atlas:
            mean = sum(atlas["deltas"].values()) / len(atlas["deltas"])
            parts.append(
                f"replacing the SAE by raw MiniLM layer 3 changes pairs MRR, the one metric that is the same task on both, "
                f"by {mean:+.3f} on average ({_span(atlas)} per subject; retrieval needs the SAE's labels)"
            )
        if swaps:
            info = study["sae_atlases"]
            n_real = len({n for a in swaps for row in eff.values() for n in row.get(a, {}).get("deltas", {})})
            per = []
            for a in swaps:
                same = ", ".join(f"{SHORT[k]} by {_swap(eff[k][a])}" for k in LIKE_FOR_LIKE if a in eff.get(k, {}))
                own = ", ".join(f"{SHORT[k]} by {_swap(eff[k][a])}" for k in PLOTTED if k in OWN_FEATURES and a in eff.get(k, {}))
                per.append(
                    f"the {_sae_brief(info[a])} changes {same}"
                    + (f" and, over its own validated features / concepts (not the same ones), {own}" if own else "")
                )
            parts.append(f"against the {_sae_brief(info[SAE])}, averaged over the {n_real} real subjects (per-subject range in brackets), " + "; ".join(per))
        sentences.append("**Atlas** — " + "; ".join(parts) + f"; {wins('atlas')}.")
    return [" ".join(sentences)]


def _swap(cell: dict) -> str:
    """'+0.012 (-0.003 to +0.020)', with the move of chance when the atlas moves it (AP's chance is the positive rate)."""
    moved = cell.get("chance_mean")
    return f"{cell['mean']:+.3f} ({_span(cell)}" + (f"; chance {moved:+.3f}" if moved is not None and abs(moved) >= 5e-4 else "") + ")"


def _sae_brief(meta: dict) -> str:
    """'1,536-feature SAE (L3, k 24, 12,000 texts, 0.5M tokens shown, 119 validated features)'."""
    return (f"{meta['width']:,}-feature SAE{'' if meta.get('shipped', True) else ' attempt'} (L{meta['layer']}, k {meta['k']}, "
            f"{meta['training_texts']:,} texts, {meta['tokens_shown'] / 1e6:.1f}M tokens shown, {meta['validated_features']} validated features)")  # fmt: skip


def effects_table(eff: dict, study: dict | None = None) -> list[str]:
    has_long = any("texts_long" in row for row in eff.values())
    swaps = [a for a in sae_swaps(study or {}) if any(a in row for row in eff.values())]
    heads = ["texts (per curve, low → high N)", "subject (range at the board's N)", "atlas (SAE → raw MiniLM L3, per subject)"]
    heads += [f"atlas: SAE 1,536 → {atlas_name(a, study)} (mean; per subject)" for a in swaps]
    heads += ["largest", "method, for scale (Procrustes → correlation, per subject)"] + (
        ['texts, long curve (uncapped WordNet; not in "largest")'] if has_long else []
    )
    lines = ["| metric | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    win = winners(eff)
    for key in PLOTTED:
        row = eff.get(key, {})
        cells = []
        for f in (*FACTORS, *swaps, "largest", "method", *(["texts_long"] if has_long else [])):
            cell = row.get(f)
            if f == "largest":
                cells.append(f"**{win[key]}**" if key in win else "—")
            elif cell is None:
                cells.append("—")
            elif f == "subject":
                cells.append(f"{cell['largest']:.3f} ({cell['where']})")
            elif f in swaps:
                cells.append(_swap(cell) + (" *" if key in OWN_FEATURES else ""))
            else:
                cells.append(
                    _span(cell)
                    + (f" (largest: {cell['where']})" if f == "texts" and len(cell["deltas"]) > 1 else f" ({cell['where']})" if f == "texts_long" else "")
                )
        lines.append(f"| {LABEL[key]} | " + " | ".join(cells) + " |")
    return lines


def best_point(study: dict, key: str) -> str:
    recs = [r for r in study["records"] if r["atlas"] == SAE and key in r["metrics"]]
    if not recs:
        return f"{SHORT.get(key, key)} —"
    r = max(recs, key=lambda r: r["metrics"][key]["value"])
    return f"{LABEL[key]} {r['metrics'][key]['value']:.3f} ({r['subject']} L{r['layer']}, {r['method']}, N {r['n_train']:,})"


def n_concepts(study: dict) -> str:
    values = sorted({int(r["n_concepts"]) for r in study["records"] if r.get("n_concepts") and r["atlas"] == SAE})
    return "/".join(map(str, values)) or "—"


def render_markdown(study: dict, plots: dict[str, str]) -> str:
    n0 = study["subject_n"]
    lines = [
        "# What limits alignment quality?",
        "",
        f"Generated by `{study['generated_by'].strip()}` (wall time {study['wall_seconds'] / 60:.1f} min on this run; the machine's 2 shared CPU cores). "
        "Every number is on the same held-out texts the published board verifies with "
        f"({study['heldout']['n']} drawn, {study['heldout']['distinct']} distinct, seed {study['heldout']['seed']}); "
        "each cell is **fitted (shuffled-T control / chance)**. Atlas: the built-in SAE on MiniLM-L6 layer 3 "
        f"({study['atlas']['width']:,} features, {study['atlas']['validated_features']} validated; `{study['atlas']['id']}`, named explicitly)"
        + (
            f"; section 2 also scores {len(sae_swaps(study))} other SAE atlas{'es' if len(sae_swaps(study)) > 1 else ''} ("
            + ", ".join("`" + study["sae_atlases"][k]["id"] + "`" for k in sae_swaps(study))
            + ")"
            if sae_swaps(study)
            else ""
        )  # fmt: skip
        + ". Raw data: [`quality.json`](quality.json).",
        "",
        "Metrics: *translation AUROC/AP* (translation@2; per atlas feature, does the translated score rank the texts where the feature fires first — "
        "averaged over the validated features, or over every feature that fires on ≥ 5 and stays silent on ≥ 5 held-out texts), "
        "*retrieval MRR* (retrieval@2; does a concept's translated held-out texts rank a feature of that concept first), "
        "*pairs MRR* (pairs@1; does a translated held-out text land on its own atlas row among all held-out texts). "
        "GGUF subjects (SmolLM2, Gemma-3, Qwen2.5-Coder) run with de-quantised 4-bit weights (Q4_1 / Q4_K_M), not the original bf16 ones.",
        "",
        f"The published board was built from {BOARD_TRAIN:,} shared training texts and verified on {BOARD_HELDOUT} held-out texts "
        "(that is what its activation cache holds), so the subject and atlas axes use that N and every point uses those held-out texts. "
        "The library warns that a fit from fewer than 2·min(d_s, d_c) texts is noisy (`FewSamplesWarning`): 768 texts for MiniLM, 1,152 for SmolLM2, "
        "1,280 for Gemma-3, 1,536 for MPNet, 1,792 for Qwen — the board's N is below all but MiniLM's.",
        "",
        "## For reference: the paper",
        "",
        f"Translation AUROC {PAPER['auroc']}, AP {PAPER['ap']}, retrieval MRR {PAPER['ret_mrr']}, with Llama-3.1-8B as subject, "
        "Gemma-2-2B + Gemma Scope as atlas, on ~500k shared texts. Here: subjects of 22M–500M parameters (4-bit for the LMs), "
        "a 1,536-feature SAE trained on 12k texts of a 384-wide encoder layer, and ≤ "
        f"{max(max(c['sizes']) for c in study['curves'] + ([study['long_curve']] if study.get('long_curve') else [])):,} shared texts. Best here (SAE atlas, any subject, method and N): "
        + "; ".join(best_point(study, key) for key in ("auroc_val", "auroc_all", "ap_val", "ap_all", "ret_mrr"))
        + ".",
        "",
    ]
    # Conclusion first.
    eff = effects(study)
    lines += ["## Conclusion", ""]
    lines += conclusion(study, eff)
    n_swaps = len(sae_swaps(study))
    swaps_text = f" and {n_swaps} SAE-atlas swap{'s' if n_swaps > 1 else ''}" if n_swaps else ""
    lines += ["", "Every change each factor made (Procrustes; the 1,536-feature SAE atlas unless the factor is the atlas). The factors span different ranges "
              f"(N × 3; four subjects; one raw-atlas swap{swaps_text}), so \"largest\" means largest over *these* ranges. Between the SAE and a raw atlas only pairs MRR compares: "
              "over raw dimensions translation AUROC/AP score a different task (AP chance there is ~0.96)."
              + (" Between SAE atlases, pairs MRR and all-feature AUROC/AP are the like-for-like metrics (each over all of that atlas's eligible features, "
                 "still different feature sets but all of them); validated-feature AUROC and retrieval MRR (marked *) average over each atlas's own validated "
                 "features / concepts, so they compare different feature sets; all-feature AP's chance is the features' positive rate, which moves with the atlas. "
                 "So the SAE-atlas swaps count towards \"largest\" only for all-feature AUROC and pairs MRR (chance fixed)."
                 if n_swaps else "")
              + f" Retrieval MRR averages over only {n_concepts(study)} concepts (the 1,536-feature atlas), so it moves in coarse steps.", ""]  # fmt: skip
    lines += effects_table(eff, study)
    # 1. texts
    lines += ["", "## 1. Shared training texts", "", f"![metrics vs N]({plots['texts']})", ""]
    lines += ["Solid: Procrustes; dotted: correlation (same statistics); dashed grey: the shuffled-T control; dotted black: chance. "
              "Each N is a prefix of one uniform sample of the train split, so a larger N only adds texts.", ""]  # fmt: skip
    lines += table(study, [r for r in study["records"] if "texts" in r["axes"]], ["subject", "layer", "method", "n_train"])
    lines += ["", throughput_note(study), ""]
    if study.get("long_curve") and "texts_long" in plots:
        lines += long_section(study, plots["texts_long"])
    # 2. atlas
    lines += ["## 2. Atlas", "", f"![SAE vs raw atlas]({plots['atlas']})", ""]
    lines += [
        f"All subjects at N = {n0:,}. Raw MiniLM layers are unlabelled: retrieval does not apply. Their translation AUROC/AP are over raw "
        "hidden dimensions (a dimension 'fires' when its max-pooled value is > 0 — for a raw layer that is most dimensions on most texts, "
        "so few qualify and the positives are the majority), so they are not the same task as over SAE features; pairs MRR is the same task "
        "on both (identify the text among the held-out ones). MiniLM as subject with the raw MiniLM L3 atlas is the identity map (a sanity row)."
        + (
            ""
            if any(m["layer"] != 3 for m in study.get("sae_atlases", {}).values())
            else " **No SAE at MiniLM's other layers was scored here** (`--sae-atlases` with an atlas folder from `scripts/atlas_sweep.py` adds one)."
        ),  # fmt: skip
        "",
    ]
    lines += table(
        study,
        [r for r in study["records"] if "atlas" in r["axes"] and not r["atlas"].startswith("sae:")],
        ["subject", "layer", "atlas", "method"],
        keys=["auroc_all", "ap_all", "pairs_mrr", "pairs_top1", "ret_mrr"],
    )
    if sae_swaps(study) and "atlases" in plots:
        lines += ["", "### 2a. SAE atlases", "", f"![SAE atlases]({plots['atlases']})", ""]
        lines += sae_atlas_section(study)
    # 3. subjects
    lines += ["", "## 3. Subject", "", f"![subjects]({plots['subjects']})", ""]
    lines += [
        f"Best board layer = the layer with the highest Procrustes retrieval MRR on `leaderboard/leaderboard.json`; N = {n0:,} (the board's texts, so no model ran again).",
        "",
    ]
    lines += table(study, [r for r in study["records"] if "subject" in r["axes"]], ["subject", "layer", "method"])
    # the default demo pair against the targets (scripts/measure_targets.py)
    lines += targets_section(study, REPO / "docs" / "targets.json")
    # pooling
    lines += ["", "## Pooling: before / after the attention-sink fix", ""]
    lines += pooling_table(study.get("pooling_before_after"))
    # checks
    lines += ["", "## Checks", ""]
    checks = [c for c in study["board_check"] if c["max_abs_diff"] is not None]
    if checks:
        worst = max(c["max_abs_diff"] for c in checks)
        lines.append(
            f"- The {len(checks)} points at N = {BOARD_TRAIN:,} with the SAE atlas re-derive the board's verified AUROC/AP/MRR/MPP (100 sampled features) to within {worst:.1e}: same texts, same statistics, same benchmarks."
        )
    lines.append(f"- Activation cache (one entry per space × chunk of texts): {study['cache']['hits']} hits, {study['cache']['misses']} misses this run.")
    lines.append(f"- The train split of the built-in corpus holds {study['n_train_split']:,} texts.")
    if study.get("long_curve"):
        lc = study["long_curve"]
        lines.append(f"- The long curve's corpus ({lc['corpus']}, `{lc['file']}`, sha256 `{lc['sha256'][:16]}…`) holds {lc['rows']:,} rows: {lc['n_train_split']:,} train and "
                     f"{lc['n_heldout_split']:,} held-out windows; none of the {study['heldout']['distinct']} held-out texts is among its {max(lc['sizes']):,} train texts (asserted).")  # fmt: skip
    return "\n".join(lines) + "\n"


def table(
    study: dict,
    recs: list[dict],
    by: list[str],
    keys: Sequence[str] = ("auroc_val", "auroc_all", "ap_all", "ap_val", "auroc_100", "ret_mrr", "ret_mpp", "pairs_mrr", "pairs_top1"),
) -> list[str]:
    heads = {"subject": "subject", "layer": "block", "method": "method", "n_train": "N", "atlas": "atlas"}
    out = ["| " + " | ".join(heads[b] for b in by) + " | " + " | ".join(LABEL[k] for k in keys) + " |", "|" + "---|" * (len(by) + len(keys))]
    for r in sorted(
        recs, key=lambda r: tuple(str(r[b]).zfill(8) if b in ("n_train", "layer") else atlas_order(r[b], study) if b == "atlas" else str(r[b]) for b in by)
    ):
        cells = [atlas_name(r[b], study) if b == "atlas" else f"{r[b]:,}" if b == "n_train" else str(r[b]) for b in by]
        out.append("| " + " | ".join(cells) + " | " + " | ".join(_cell(r["metrics"].get(k)) for k in keys) + " |")

    def count(name: str, atlas: str = SAE) -> str:
        values = sorted({int(r[name]) for r in recs if r.get(name) is not None and r["atlas"] == atlas})
        return "/".join(map(str, values)) or "—"

    by_atlas = sorted(recs, key=lambda r: atlas_order(r["atlas"], study))
    eligible = list(dict.fromkeys(f"{atlas_name(r['atlas'], study)}: {int(r['n_eligible'])}" for r in by_atlas if r.get("n_eligible") is not None))
    saes = list(dict.fromkeys(r["atlas"] for r in by_atlas if is_sae(r["atlas"])))
    if saes == [SAE]:
        qualify = f"SAE atlas: {count('n_validated')} validated features qualify, {count('n_concepts')} retrieval concepts. "
    else:
        qualify = (
            "Validated features that qualify / retrieval concepts: "
            + "; ".join(f"{atlas_name(a, study)} {count('n_validated', a)} / {count('n_concepts', a)}" for a in saes)
            + ". "
        )
    out += ["", qualify + f"Eligible features (fire on ≥ 5 and stay silent on ≥ 5 held-out texts): {', '.join(eligible)}."]
    return out


def sae_atlas_section(study: dict) -> list[str]:
    """Section 2a: what each SAE atlas is (atlas.json + labels.jsonl), the caveat on comparing them, and every SAE-atlas row."""
    n0 = study["subject_n"]
    board_n = " (the board's train texts)" if n0 == BOARD_TRAIN else ""
    lines = [
        "| atlas | id | MiniLM layer | width | k | training texts | tokens shown | explained variance | validated features | WordNet categories covered (largest share) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in study["sae_atlases"].values():
        lines.append(f"| {m['label']} | `{m['id']}` | {m['layer']} | {m['width']:,} | {m['k']} | {m['training_texts']:,} | {m['tokens_shown']:,} | "
                     f"{m['explained_variance']:.3f} | {m['validated_features']} | {m['categories_covered']} ({m['max_category']} {m['max_share']:.0%}) |")  # fmt: skip
    lines += [
        "",
        f"Every subject at its best board layer, N = {n0:,}{board_n}, the same held-out texts, methods, controls and chance as above; "
        "each atlas's rows are its own MiniLM forward + SAE on those texts (activation cache keyed by the atlas id + revision). "
        "Tokens shown = SAE training steps × batch tokens (text tokens of at most 64 per window, passes repeated). "
        "**Caveat**: translation AUROC/AP over validated features and retrieval MRR/MPP average over each atlas's *own* validated features / "
        "concepts (a different set per atlas, and a different number of them), so across atlases they compare different feature sets; "
        "pairs MRR (identify the text among the held-out ones) and the all-eligible-feature AUROC/AP are the like-for-like ones "
        "(still different features, but all of each atlas's that fire on ≥ 5 and stay silent on ≥ 5 held-out texts). "
        "AP's chance is the features' positive rate, which the atlas sets (denser features, higher chance): "
        + ", ".join(f"{m['label']} {_chance(study, key, 'ap_all')}" for key, m in study["sae_atlases"].items())
        + '; compare AP with its chance (an SAE-atlas swap counts towards "largest" only where chance stays put: all-feature AUROC, pairs MRR).',
        "",
    ]
    lines += table(
        study,
        [r for r in study["records"] if "atlas" in r["axes"] and is_sae(r["atlas"])],
        ["subject", "layer", "atlas", "method"],
        keys=["auroc_all", "ap_all", "pairs_mrr", "pairs_top1", "auroc_val", "ap_val", "ret_mrr", "ret_mpp"],
    )
    tp = {name: v for name, v in study["throughput"].items() if name in _sae_rows_labels(study)}
    pooled = [f"{name.removeprefix('atlas (').removesuffix(')')} {v['texts_per_s']:.1f} texts/s ({v['texts']:,} texts)" for name, v in tp.items()]
    cached = len(sae_swaps(study)) - len(pooled)
    note = [f"Forward passes (MiniLM + SAE) this run: {'; '.join(pooled)}."] if pooled else []
    if cached:
        which = "The other SAE atlases'" if pooled else "Every SAE atlas's"
        note.append(f"{which} rows ({n0 + study['heldout']['distinct']:,} texts each) came from the activation cache this run.")
    return lines + ["", " ".join(note)]


def _sae_rows_labels(study: dict) -> set[str]:
    """The throughput labels of the extra SAE atlases' rows (section 2a's, not section 1's)."""
    return {f"atlas ({study['sae_atlases'][key]['label']})" for key in sae_swaps(study)}


def _chance(study: dict, atlas: str, key: str) -> str:
    values = [r["metrics"][key]["chance"] for r in study["records"] if r["atlas"] == atlas and "atlas" in r["axes"] and key in r["metrics"]]
    values = [v for v in values if v is not None]
    return "—" if not values else _f(min(values)) if max(values) - min(values) < 5e-4 else f"{min(values):.3f}–{max(values):.3f}"


def throughput_note(study: dict) -> str:
    tp = {name: v for name, v in study["throughput"].items() if not name.endswith("long curve") and name not in _sae_rows_labels(study)}
    if tp:
        parts = [f"{name} {v['texts_per_s']:.1f} texts/s ({v['texts']:,} texts)" for name, v in tp.items()]
        note = "Forward passes this run: " + "; ".join(parts) + "."
    else:
        parts = [f"{name} {n / s:.1f} texts/s ({n:,} texts)" for name, (n, s) in POOLED_ROWS.items()]
        note = (
            "Every subject row and every row of the 1,536-feature SAE came from the activation cache this run. When the rows beyond the board's were pooled (2 CPU cores shared with 4 other jobs): "
            + "; ".join(parts)
            + "."
        )
    n_all = study["n_train_split"]
    if all(max(c["sizes"]) < n_all for c in study["curves"]):
        subject, atlas = POOLED_ROWS["mpnet (to block 11)"], POOLED_ROWS["atlas (MiniLM L3 + SAE)"]
        hours = (n_all - 3000) * (subject[1] / subject[0] + atlas[1] / atlas[0]) / 3600
        note += (f" At those rates the full curve to all {n_all:,} train texts would need about {hours:.1f} more hours for MPNet alone (the atlas included), "
                 "far beyond the hour this study had, so the curves stop at 3,000 (10k/30k/47k were not measured for these subjects"
                 + (f"; section 1b goes to N = {max(study['long_curve']['sizes']):,} for the much cheaper {study['long_curve']['subject']} block {study['long_curve']['layer']} "
                    "on an uncapped WordNet corpus" if study.get("long_curve") else "")
                 + "). `--curve mpnet:11:1000,3000,10000,30000,all` extends one on a faster machine; the cache keeps every chunk already pooled.")  # fmt: skip
    return note


def targets_section(study: dict, path: Path) -> list[str]:
    """Section 4: the default demo pair against issue 14's targets vs shared texts (docs/targets.json, written by
    ``scripts/measure_targets.py``), and why the targets are out of reach, every number from the two JSON files."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    targets, labels = data["targets"], data["labels"]
    curve = [r for r in data["rows"] if r["sampling"] == "uniform" and r["pooling"] == "default"]
    arms = list(dict.fromkeys((r["atlas"], r["method"]) for r in curve))
    subject = data["subject"]
    lines = ["", "## 4. The default demo pair against the targets", ""]
    if (path.parent / "targets.png").is_file():
        lines += ["![demo pair vs shared texts](targets.png)", ""]
    lines += [
        f"{subject['model_id'].rsplit('/', 1)[-1]} block {subject['layer']} (the demo's pair), the benchmarks' default held-out sample ({data['heldout']['n']:,} texts) "
        "and settings, a prefix of one uniform sample for each N; generated by `scripts/measure_targets.py` (`docs/targets.json`; the README has the "
        "setup-by-setup table, from the corpus read in order and the sink token pooled to today's defaults). Targets (the paper's numbers): "
        + ", ".join(f"{labels[k]} ≥ {v:.2f}" for k, v in targets.items()) + ".",
        "",
        "| atlas | method | shared texts | " + " | ".join(labels[k] for k in data["order"]) + " |",
        "|---|---|---|" + "---|" * len(data["order"]),
    ]
    for atlas, method in arms:
        for r in sorted({r["n"]: r for r in curve if (r["atlas"], r["method"]) == (atlas, method)}.values(), key=lambda r: r["n"]):
            cells = [f"{r['metrics'][k]['value']:.3f} ({r['metrics'][k]['control']:.3f})" if r["metrics"][k]["value"] is not None else "—" for k in data["order"]]
            lines.append(f"| `{atlas}` ({r['atlas_validated']}) | {method} | {r['n']:,} | " + " | ".join(cells) + " |")
    why = []
    for key, goal in targets.items():
        best = max(curve, key=lambda r: r["metrics"][key]["value"] or 0.0)
        value = best["metrics"][key]["value"]
        reached = f"reaches the target (≥ {goal:.2f})" if value >= goal else f"misses the target (≥ {goal:.2f}) by {goal - value:.3f}"
        first = [r for r in curve if (r["atlas"], r["method"]) == (best["atlas"], best["method"])]
        lo, hi = min(first, key=lambda r: r["n"]), max(first, key=lambda r: r["n"])
        why.append(
            f"{labels[key]}: best {value:.3f} (`{best['atlas']}`, {best['method']}, {best['n']:,} texts) {reached}; "
            f"that arm moves {lo['metrics'][key]['value']:.3f} → {hi['metrics'][key]['value']:.3f} from {lo['n']:,} to {hi['n']:,} texts"
        )
    lines += ["", "**Why the targets are (not) reached.** " + "; ".join(why) + "."]
    lc = study.get("long_curve")
    if lc:
        sizes = sorted(lc["sizes"])
        pts = {n: _value(study, "auroc_val", corpus=lc["corpus"], subject=lc["subject"], layer=lc["layer"], atlas=SAE, method="procrustes", n_train=n) for n in sizes}
        mid = max((n for n in sizes if n <= 10_000), default=sizes[0])
        if pts.get(sizes[0]) is not None and pts.get(mid) is not None and pts.get(sizes[-1]) is not None:
            lines += [
                "",
                f"Procrustes saturates with shared text: on the long curve (section 1b; {lc['subject']} block {lc['layer']}, the cheapest pair, "
                f"where texts cost least) validated-feature AUROC goes {pts[sizes[0]]:.3f} → {pts[mid]:.3f} from {sizes[0]:,} to {mid:,} texts and only to "
f"{pts[sizes[-1]]:.3f} at {sizes[-1]:,} — flat below 0.85; CCA, which estimates both sides' covariances (4,096 × 4,096 on the 4k atlas), "
                "gains more from texts than Procrustes does here (the table above), though it too flattens by the largest N. Beyond the texts, what is left is what this study can vary only a little here: the atlas "
                "(section 2a: four SAE atlases on MiniLM, all a small lexical encoder's features, move the like-for-like metrics by hundredths) and the "
                "subjects (section 3: 22M–500M parameters, the causal LMs 4-bit) — against the paper's 8B subject and Gemma-2-2B + Gemma Scope atlas. "
                "Retrieval MRR averages over 14–19 concepts, where one concept moves it by ~0.05.",
            ]
    return lines


def long_section(study: dict, plot: str) -> list[str]:
    """Section 1b: the long texts curve (train texts from another corpus file), its table and what it shows, every number from ``study``."""
    lc = study["long_curve"]
    lo, hi = min(lc["sizes"]), max(lc["sizes"])
    recs = [r for r in study["records"] if "texts-long" in r["axes"]]
    lines = [f"## 1b. Up to N = {hi:,} texts (uncapped WordNet)", "", f"![metrics vs N, uncapped WordNet]({plot})", ""]
    lines += [
        f"The built-in corpus caps every WordNet category at 1,500 rows, so its train split stops at {study['n_train_split']:,} windows. Here the train texts come from "
        f"`{lc['file']}` derived from the same WordNet 3.0 with no cap (`scripts/derive_wordnet_corpus.py --cap-per-category 100000000`; how: the docstring of "
        f"`scripts/quality_study.py`): {lc['rows']:,} rows, {lc['n_train_split']:,} train windows, sha256 `{lc['sha256'][:16]}…`. Each N is a prefix of one sample "
        f"({lc['sampling']}) of its train split, cut and split as the built-in corpus is ({lc['window_words']}-word windows, held-out fraction {lc['heldout_fraction']}, "
        f"split salt `{lc['split_salt']}`): the split is a keyed hash of each window's text, so the board's held-out texts are held out here too, and none of them is "
        f"among the {hi:,} train texts (asserted). {lc['shared_with_builtin_train']:,} of those {hi:,} are also in the built-in train split. "
        f"Subject {lc['subject']} at block {lc['layer']} (a board pair), atlas the same SAE, every point scored on the same {study['heldout']['n']} held-out texts as above.",
        "",
        "Solid: Procrustes; dotted: correlation (same statistics); dashed grey: the shuffled-T control; dotted black: chance.",
        "",
    ]
    lines += table(study, recs, ["subject", "layer", "method", "n_train"])
    sentences = []
    for method in study["methods"]:
        moves = []
        for key in PLOTTED:
            a = _value(study, key, corpus=lc["corpus"], subject=lc["subject"], layer=lc["layer"], atlas=SAE, method=method, n_train=lo)
            b = _value(study, key, corpus=lc["corpus"], subject=lc["subject"], layer=lc["layer"], atlas=SAE, method=method, n_train=hi)
            if a is not None and b is not None:
                moves.append(f"{SHORT[key]} {a:.3f} → {b:.3f} ({b - a:+.3f})")
        if moves:
            sentences.append(f"From {lo:,} to {hi:,} texts, {'Procrustes' if method == 'procrustes' else method} moves " + ", ".join(moves) + ".")
    sizes = sorted(lc["sizes"])
    if len(sizes) > 2:
        prev = sizes[-2]
        steps, controls = [], []
        for key in PLOTTED:
            a = _value(study, key, corpus=lc["corpus"], subject=lc["subject"], layer=lc["layer"], atlas=SAE, method="procrustes", n_train=prev)
            b = _value(study, key, corpus=lc["corpus"], subject=lc["subject"], layer=lc["layer"], atlas=SAE, method="procrustes", n_train=hi)
            ctl = [
                r["metrics"][key]["control"] for r in recs if r["method"] == "procrustes" and key in r["metrics"] and r["metrics"][key]["control"] is not None
            ]
            if a is not None and b is not None:
                steps.append(f"{SHORT[key]} {b - a:+.3f}")
            if ctl:
                controls.append(f"{SHORT[key]} {min(ctl):.3f}–{max(ctl):.3f}")
        sentences.append(
            f"The last step ({prev:,} → {hi:,}) changes the Procrustes metrics by " + ", ".join(steps)
            + "; over the whole curve their shuffled-T controls stay within " + ", ".join(controls) + "."
        )  # fmt: skip
    lines += ["", " ".join(sentences), "", long_throughput_note(study), ""]
    return lines


def long_throughput_note(study: dict) -> str:
    lc = study["long_curve"]
    tp = {name: v for name, v in study["throughput"].items() if name.endswith("long curve")}
    if tp:
        parts = [f"{name.removesuffix(', long curve')} {v['texts_per_s']:.1f} texts/s ({v['texts']:,} texts)" for name, v in tp.items()]
        return "Forward passes for this curve this run: " + "; ".join(parts) + "."
    parts = [f"{name} {n / s:.1f} texts/s ({n:,} texts)" for name, (n, s) in POOLED_LONG.items()]
    return (f"Every row of this curve came from the activation cache this run. When its {max(lc['sizes']):,} train texts were pooled "
            "(`--rows-only`, one thread, 2 CPU cores shared with other jobs; WordNet windows average ~11 words): " + "; ".join(parts) + ".")  # fmt: skip


def pooling_table(p: dict | None) -> list[str]:
    if not p:
        return ["(docs/pooling.json not found)"]
    out = [f"From `docs/pooling.json` (`scripts/measure_pooling.py`: {p['train']} train / {p['heldout']} held-out texts, centred Procrustes, pairs-style held-out matching). "
           f"Before = `{p['before']}` (special tokens masked only); after = `{p['after']}` (the default `PoolingConfig`).", "",
           "| model (block) | first-token norm / median | MRR before | MRR after | top-1 before | top-1 after | control MRR |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in p["models"].items():
        out.append(f"| {name} ({m['layer']}) | {m['first_token_norm_over_median']:.1f}× | {_f(m['before']['mrr'])} | {_f(m['after']['mrr'])} | "
                   f"{_f(m['before']['top1'])} | {_f(m['after']['top1'])} | {_f(m['after']['control_mrr'])} |")  # fmt: skip
    return out


# ------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from atlas_align.errors import ConstantColumnWarning, FewSamplesWarning

    warnings.simplefilter("ignore", FewSamplesWarning)  # the report states the thresholds once
    warnings.simplefilter("ignore", ConstantColumnWarning)  # a few SAE features never fire on the train texts: correlation 0
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: MiniLM only, tiny N, 100 held-out texts, written to a temporary folder")
    parser.add_argument("--curve", action="append", default=None, help="NAME:LAYER:SIZES (sizes comma-separated, 'all' = the whole train split); repeatable")
    parser.add_argument(
        "--subjects", default=None, help="NAME:LAYER,... for the atlas and subject axes (default: the 5 board subjects at their best board layer)"
    )
    parser.add_argument("--subject-n", type=int, default=BOARD_TRAIN, help="shared texts for the atlas and subject axes (default: the board's, cached)")
    parser.add_argument("--raw-atlas-layers", default="1,2,3,5", help="raw MiniLM layers used as atlases (the board cached 1,2,3,5)")
    parser.add_argument(
        "--sae-atlases",
        default=DEFAULT_SAE_ATLASES,
        help=f"SPEC[=LABEL],... SAE atlases scored on the atlas axis (built-in names or atlas folders; {ATLAS} always, as 'sae'; default: both shipped ones, {DEFAULT_SAE_ATLASES})",
    )
    parser.add_argument("--heldout", type=int, default=BOARD_HELDOUT, help="held-out texts (default: the board's verify sample, cached)")
    parser.add_argument("--methods", default="procrustes,correlation")
    parser.add_argument("--out", default=None, help="output folder (default docs/, or a temporary folder with --quick)")
    parser.add_argument("--rows-only", action="store_true", help="only pool (and cache) the curves' activations, in the order given; no fits, no outputs")
    parser.add_argument("--replot", action="store_true", help="re-render QUALITY.md and the plots from OUT/quality.json (no fits)")
    parser.add_argument(
        "--long-curve",
        default=None,
        help=f"NAME:LAYER:SIZES of the long texts curve, its train texts from --long-corpus ('all' = its whole train split; default {DEFAULT_LONG_CURVE} when a long corpus is found)",
    )
    parser.add_argument(
        "--long-corpus",
        default=None,
        help=f"corpus file of the long curve's train texts (default ${LONG_CORPUS_ENV}, else {LONG_CORPUS_HOME} if present; see the docstring)",
    )
    parser.add_argument("--cache", default=None, help="activation cache (default $ATLAS_ALIGN_ACTIVATION_CACHE, else ~/.cache/atlas-align/activations)")
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        args.sae_atlases_parsed = parse_sae_atlases(args.sae_atlases)
    except ValueError as exc:
        parser.error(str(exc))
    if args.quick:
        args.curve = args.curve or QUICK_CURVES
        args.subjects = args.subjects or "minilm:3"
        args.subject_n, args.heldout = min(args.subject_n, 400), min(args.heldout, 100)
        args.raw_atlas_layers = "3" if args.raw_atlas_layers == "1,2,3,5" else args.raw_atlas_layers
    args.curve = args.curve or DEFAULT_CURVES
    if args.long_corpus is None and not args.quick:
        found = os.environ.get(LONG_CORPUS_ENV) or (str(LONG_CORPUS_HOME) if LONG_CORPUS_HOME.is_file() else None)
        if found and (args.long_curve or not args.replot):
            args.long_corpus = found
            say(f"long curve corpus: {found}")
    if args.long_curve and not args.long_corpus:
        parser.error(f"--long-curve needs --long-corpus (or ${LONG_CORPUS_ENV}, or {LONG_CORPUS_HOME}); see the docstring for how to derive it")
    if args.long_corpus and not args.long_curve:
        args.long_curve = DEFAULT_LONG_CURVE
    if not args.long_corpus and not args.replot and not args.quick:
        say(f"no long-curve corpus (--long-corpus, ${LONG_CORPUS_ENV} or {LONG_CORPUS_HOME}): section 1b is left out")
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="quality-quick-")) if args.quick else REPO / "docs")
    args.cache = args.cache or os.environ.get("ATLAS_ALIGN_ACTIVATION_CACHE") or str(Path.home() / ".cache" / "atlas-align" / "activations")
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")

    from atlas_align.corpus.sources import CorpusConfig, iter_samples
    from atlas_align.files import atomic_write_text

    if args.replot:  # re-render the report and plots from an earlier run's quality.json
        study = json.loads((out / "quality.json").read_text(encoding="utf-8"))
    else:
        args.n_train_split = sum(1 for _ in iter_samples(CorpusConfig(), "train"))
        args.long_curve_parsed = args.long_corpus_info = None
        if args.long_curve:
            if not Path(args.long_corpus).expanduser().is_file():
                parser.error(f"--long-corpus {args.long_corpus}: no such file; see the docstring for how to derive it")
            args.long_corpus_info = long_corpus_info(args.long_corpus)
            args.n_long_train_split = args.long_corpus_info["n_train_split"]
            args.long_curve_parsed = parse_curve(args.long_curve, args.n_long_train_split)
            say(f"long curve: {args.long_curve} on {args.long_corpus} ({args.n_long_train_split:,} train windows)")
        study = run_study(args)
    if args.rows_only:
        say(f"rows pooled: {study}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    plots = {"texts": "quality_texts.png", "atlas": "quality_atlas.png", "subjects": "quality_subjects.png"}
    plotters: dict[str, Callable[[dict, Path], Path]] = {
        "texts": plot_texts, "atlas": plot_atlas, "subjects": plot_subjects, "texts_long": plot_texts_long, "atlases": plot_atlases,
    }  # fmt: skip
    if len(study.get("sae_atlases", {})) > 1:
        plots["atlases"] = "quality_atlases.png"
    if study.get("long_curve"):
        plots["texts_long"] = "quality_texts_long.png"
    for name, filename in plots.items():
        plotters[name](study, out / filename)
    if not args.replot:
        atomic_write_text(out / "quality.json", json.dumps(study, indent=1, allow_nan=True) + "\n")
    atomic_write_text(out / "QUALITY.md", render_markdown(study, plots))
    say(f"wrote {out / 'QUALITY.md'}, quality.json and {len(plots)} plots in {study['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
