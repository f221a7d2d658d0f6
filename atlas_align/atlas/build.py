"""Build a Concept Atlas offline: per-token activations → sae-lens SAE → auto-labels on held-out texts.

The chain is one function, :func:`build_atlas`, and it is reproducible bit for bit from its seed
on the same machine and library versions: texts are drawn by a seeded permutation, token batches
come from a seeded generator, and the build pins torch to a fixed number of threads.

Labels are checked, not guessed: held-out texts carry ground-truth WordNet categories. Each
feature's category is *chosen* on one half of the held-out texts (best AUROC of the feature's
pooled activation for that category against the rest) and *validated* on the other half; a label
is ``validated`` when that second AUROC is at least ``validation_auroc`` (0.8 by default).
Features without a good category are labelled by the words over-represented in the texts that
activate them most (not validated).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import CorpusConfig, Sample, iter_samples
from atlas_align.errors import ConfigError, CorpusError
from atlas_align.models.activations import Hookpoint, base_model, hidden_size, resolve_hookpoint
from atlas_align.models.hooks import forward_to

DEFAULT_MODEL = "minilm"
DEFAULT_LAYER = 3
DEFAULT_WIDTH = 1536

# Readable names for WordNet lexicographer categories ("noun.animal" → "animals (noun.animal)").
CATEGORY_NAMES: dict[str, str] = {
    "adj.all": "descriptive adjectives", "adj.pert": "relational adjectives", "adj.ppl": "participial adjectives",
    "adv.all": "adverbs", "noun.Tops": "top-level concepts", "noun.act": "acts and actions",
    "noun.animal": "animals", "noun.artifact": "artifacts and man-made objects", "noun.attribute": "attributes and qualities",
    "noun.body": "body parts", "noun.cognition": "cognition and knowledge", "noun.communication": "communication and language",
    "noun.event": "events", "noun.feeling": "feelings and emotions", "noun.food": "food and drink",
    "noun.group": "groups and organisations", "noun.location": "places and locations", "noun.motive": "motives and goals",
    "noun.object": "natural objects", "noun.person": "people and roles", "noun.phenomenon": "natural phenomena",
    "noun.plant": "plants", "noun.possession": "possession and money", "noun.process": "processes",
    "noun.quantity": "quantities and units", "noun.relation": "relations", "noun.shape": "shapes",
    "noun.state": "states and conditions", "noun.substance": "substances and materials", "noun.time": "time and dates",
    "verb.body": "bodily actions (verbs)", "verb.change": "change (verbs)", "verb.cognition": "thinking (verbs)",
    "verb.communication": "speaking and communicating (verbs)", "verb.competition": "competition and fighting (verbs)",
    "verb.consumption": "eating and drinking (verbs)", "verb.contact": "touching and contact (verbs)",
    "verb.creation": "making and creating (verbs)", "verb.emotion": "feeling (verbs)", "verb.motion": "motion (verbs)",
    "verb.perception": "perception (verbs)", "verb.possession": "having and transfer (verbs)",
    "verb.social": "social activity (verbs)", "verb.stative": "being and states (verbs)", "verb.weather": "weather (verbs)",
}  # fmt: skip

_STOPWORDS = frozenset(
    "a an the of or and to in on at by for with from as is are was were be been being that this these those it its "
    "into onto than then which who whom whose what when where how not no nor but if so such any some all each every "
    "other another one two used use using having has have had do does did can could may might will would shall should "
    "very more most less least also often usually especially something someone etc esp e g i".split()
)


def category_label(category: str) -> str:
    """A readable label for a WordNet category, keeping the category id for exact search."""
    return f"{CATEGORY_NAMES.get(category, category.split('.', 1)[-1])} ({category})"


class AtlasBuildConfig(BaseModel):
    """Everything ``atlas-align atlas build`` needs; recorded in the atlas so a rebuild is exact."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    layer: int | None = DEFAULT_LAYER
    hookpoint: str | None = Field(None, description="explicit module path relative to model.base_model (overrides layer)")
    width: int = Field(DEFAULT_WIDTH, gt=0, description="number of SAE features (d_sae)")
    k: int = Field(24, gt=0, description="active features per token (TopK SAE)")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    samples: int = Field(12000, gt=0, description="training texts (windows)")
    heldout_samples: int = Field(4000, ge=0, description="held-out texts for evaluation and labels")
    seed: int = 0
    training_tokens: int = Field(500_000, gt=0, description="tokens shown to the SAE (several epochs over the collected ones)")
    batch_tokens: int = Field(1024, gt=0)
    lr: float = Field(2e-3, gt=0)
    max_length: int = Field(64, gt=1)
    model_batch_size: int = Field(32, gt=0)
    threads: int = Field(1, gt=0, description="torch threads during the build (fixed for bit-for-bit rebuilds)")
    validation_auroc: float = Field(0.8, gt=0.5, le=1.0)
    dense_fraction: float = Field(0.5, gt=0.0, le=1.0)
    scan_limit: int = Field(500_000, gt=0, description="windows read from the corpus before the seeded draw")


# The first built-in atlas (atlas_align/data/default_atlas, id BUILTIN_ATLAS_ID, the default until issue 14) is exactly
# this build.
DEFAULT_ATLAS_BUILD = AtlasBuildConfig()

# The stronger built-in atlas (atlas_align/data/atlas_4k, id STRONG_ATLAS_ID; issue 14): every window of the
# WordNet corpus (samples / heldout_samples above its 47,251 training and 5,195 held-out windows take them all),
# a 4,096-wide TopK SAE with k = 128, 1M tokens shown (1.4 epochs over the ~715k training tokens). The default atlas
# ('builtin') since issue 14. docs/ATLAS.md logs the attempts it was chosen from (scripts/atlas_sweep.py).
STRONG_ATLAS_BUILD = AtlasBuildConfig(width=4096, k=128, samples=60_000, heldout_samples=6_000, training_tokens=1_000_000)


# ----------------------------------------------------------------------------------------- tokens


@dataclass
class TokenActivations:
    """Per-token activations of real tokens (no padding, no special tokens), text by text."""

    acts: torch.Tensor  # (T, d)
    offsets: torch.Tensor  # (N + 1,): text i owns acts[offsets[i]:offsets[i+1]]

    @property
    def text_ids(self) -> torch.Tensor:
        lengths = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(len(lengths)), lengths)


@torch.inference_mode()
def token_activations(model: nn.Module, tokenizer, hookpoint: Hookpoint, texts: Sequence[str], *, batch_size: int = 32, max_length: int = 64, progress: bool = False) -> TokenActivations:
    """Activations at ``hookpoint`` for every real token of every text, in text order."""
    from tqdm.auto import tqdm

    module = base_model(model).get_submodule(hookpoint.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))  # little padding per batch
    per_text: list[torch.Tensor | None] = [None] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc="token activations", disable=not progress):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_special_tokens_mask=True, return_tensors="pt")
        real = enc.pop("special_tokens_mask").to(torch.bool).logical_not() & enc["attention_mask"].to(torch.bool)
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        acts = forward_to(model, module, inputs, hookpoint.path).float()
        for row, i in enumerate(idx):
            per_text[i] = acts[row][real[row]].clone()
    lengths = torch.tensor([0] + [t.shape[0] for t in per_text])  # type: ignore[union-attr]
    d = hidden_size(model)
    acts = torch.cat(per_text) if per_text else torch.empty(0, d)  # type: ignore[arg-type]
    return TokenActivations(acts=acts, offsets=torch.cumsum(lengths, 0))


def pooled_features(encode: Callable[[torch.Tensor], torch.Tensor], tokens: TokenActivations, chunk: int = 8192) -> torch.Tensor:
    """Max over each text's real tokens of ``encode(token activations)``; a text without tokens pools to 0."""
    n = len(tokens.offsets) - 1
    text_ids = tokens.text_ids
    pooled: torch.Tensor | None = None
    with torch.inference_mode():
        for start in range(0, tokens.acts.shape[0], chunk):
            feats = encode(tokens.acts[start : start + chunk]).float()
            if pooled is None:
                pooled = torch.full((n, feats.shape[1]), float("-inf"))
            index = text_ids[start : start + chunk, None].expand_as(feats)
            pooled.scatter_reduce_(0, index, feats, reduce="amax", include_self=True)
        if pooled is None:
            return torch.zeros(n, 0)
        pooled = pooled.masked_fill(torch.isinf(pooled), 0.0)
    return pooled.clone()  # outside inference mode: a normal tensor callers may modify


# --------------------------------------------------------------------------------------- training


def token_batches(acts: torch.Tensor, batch_tokens: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled batches over the token activations, epoch by epoch, from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    n = acts.shape[0]
    if n < batch_tokens:
        raise CorpusError(f"Only {n} tokens were collected, fewer than one batch ({batch_tokens}); use more --samples.")
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_tokens + 1, batch_tokens):
            yield acts[perm[start : start + batch_tokens]]


def train_topk_sae(acts: torch.Tensor, *, width: int, k: int, training_tokens: int, batch_tokens: int, lr: float, seed: int, metadata: dict | None = None, progress: bool = False):
    """Train a sae-lens TopK SAE on per-token activations with ``SAETrainer``; return the inference SAE."""
    import logging

    from sae_lens import SAE, LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(seed)
    sae_cfg = TopKTrainingSAEConfig(d_in=acts.shape[1], d_sae=width, k=k, dtype="float32", device="cpu", apply_b_dec_to_input=True)
    for key, value in (metadata or {}).items():
        sae_cfg.metadata[key] = value
    training_sae = TopKTrainingSAE(sae_cfg)
    with torch.no_grad():  # start the decoder bias at the data mean (the standard geometric-median shortcut)
        training_sae.b_dec.copy_(acts.mean(0))
    steps = max(1, training_tokens // batch_tokens)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_tokens,
        train_batch_size_samples=batch_tokens,
        lr=lr,
        lr_end=lr / 10,  # sae-lens asserts lr_end is set
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(50, steps // 10),
        dead_feature_window=max(20, steps // 20),
        feature_sampling_window=max(50, steps // 5),
        logger=LoggingConfig(log_to_wandb=False),
    )
    silenced = logging.getLogger("sae_lens")
    level = silenced.level
    silenced.setLevel(logging.WARNING)
    try:
        with _maybe_quiet_tqdm(progress):
            trained = SAETrainer(cfg=trainer_cfg, sae=training_sae, data_provider=token_batches(acts, batch_tokens, seed)).fit()
    finally:
        silenced.setLevel(level)
    # Round-trip through sae-lens' own disk format: the atlas ships exactly what gets labelled here.
    with tempfile.TemporaryDirectory(prefix="atlas-sae-") as tmp:
        trained.save_inference_model(tmp)
        sae = SAE.load_from_disk(tmp, device="cpu")
    return sae.eval(), steps


@contextlib.contextmanager
def _maybe_quiet_tqdm(progress: bool):
    """SAETrainer always draws a progress bar; silence it for library calls and tests."""
    if progress:
        yield
        return
    import functools
    from unittest import mock

    from sae_lens.training import sae_trainer
    from tqdm.auto import tqdm

    with mock.patch.object(sae_trainer, "tqdm", functools.partial(tqdm, disable=True)):
        yield


@torch.inference_mode()
def reconstruction_stats(sae, acts: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """(mean L0 per token, explained variance) of the SAE on held-out token activations."""
    if acts.shape[0] == 0:
        return float("nan"), float("nan")
    mean = acts.mean(0)
    resid = total = l0 = 0.0
    for start in range(0, acts.shape[0], chunk):
        x = acts[start : start + chunk]
        feats = sae.encode(x)
        resid += float(((sae.decode(feats) - x) ** 2).sum())
        total += float(((x - mean) ** 2).sum())
        l0 += float((feats > 0).sum())
    return l0 / acts.shape[0], 1.0 - resid / total


# ----------------------------------------------------------------------------------------- labels


def auroc_matrix(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """AUROC of every column of ``scores`` (N, F) for every column of ``positives`` (N, C, bool) → (F, C).

    Mann–Whitney with average ranks for ties (many texts pool to exactly 0).
    """
    import numpy as np
    from scipy.stats import rankdata

    ranks = torch.from_numpy(rankdata(scores.double().numpy(), axis=0).astype(np.float64))  # (N, F)
    pos = positives.double()
    n_pos = pos.sum(0)  # (C,)
    n_neg = pos.shape[0] - n_pos
    rank_sums = ranks.T @ pos  # (F, C)
    auc = (rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp(min=1)
    auc[:, (n_pos == 0) | (n_neg == 0)] = float("nan")
    return auc.float()


def category_stats(labels: FeatureLabels) -> dict:
    """How the validated labels spread over WordNet categories: count, categories covered, the largest share."""
    counts = Counter(item.label.rsplit("(", 1)[-1].rstrip(")") for item in labels.validated())
    total = sum(counts.values())
    top, top_n = max(counts.items(), key=lambda kv: (kv[1], kv[0])) if counts else (None, 0)
    return {
        "validated": total,
        "categories_covered": len(counts),
        "max_category": top,
        "max_share": top_n / total if total else 0.0,
        "per_category": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOPWORDS]


def context_words(pooled: torch.Tensor, texts: Sequence[str], feature: int, top_n: int = 20, n_words: int = 3, doc_freq: Counter | None = None) -> list[str]:
    """Words most over-represented in the texts that activate ``feature`` most, against all texts."""
    column = pooled[:, feature]
    active = int((column > 0).sum())
    if active == 0:
        return []
    top = torch.argsort(column, descending=True, stable=True)[: min(top_n, active)].tolist()
    doc_freq = doc_freq if doc_freq is not None else Counter(w for t in texts for w in set(_words(t)))
    top_freq = Counter(w for i in top for w in set(_words(texts[i])))
    n_texts, n_top = len(texts), len(top)
    scored = [
        ((count + 0.5) / (doc_freq[w] / n_texts * n_top + 0.5), count, w)
        for w, count in top_freq.items()
        if count >= 2
    ]
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    return [w for _, _, w in scored[:n_words]]


@dataclass
class LabelReport:
    labels: FeatureLabels
    dead: list[int]
    dense: list[int]
    validated: int


def auto_label(pooled: torch.Tensor, texts: Sequence[str], categories: Sequence[str | None], *, seed: int = 0, validation_auroc: float = 0.8, dense_fraction: float = 0.5, min_positives: int = 10) -> LabelReport:
    """Label every feature from pooled activations on held-out texts with ground-truth categories.

    The best category is chosen on one half of the texts and its AUROC measured on the other
    half, so the validation score is not inflated by picking the best of many categories.
    """
    n, width = pooled.shape
    fires = pooled > 0
    fire_rate = fires.float().mean(0) if n else torch.zeros(width)
    dead = [i for i in range(width) if not bool(fires[:, i].any())]
    dense = [i for i in range(width) if float(fire_rate[i]) > dense_fraction]

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    half_a, half_b = perm[: n // 2], perm[n // 2 :]
    names = sorted({c for c in categories if c})
    aurocs_b = None
    best = None
    if names and n >= 4:
        onehot = torch.zeros(n, len(names), dtype=torch.bool)
        index = {c: j for j, c in enumerate(names)}
        for i, c in enumerate(categories):
            if c:
                onehot[i, index[c]] = True
        usable = (onehot[half_a].sum(0) >= min_positives) & (onehot[half_b].sum(0) >= min_positives)
        auroc_a = auroc_matrix(pooled[half_a], onehot[half_a])
        auroc_a[:, ~usable] = float("nan")
        best = torch.nan_to_num(auroc_a, nan=-1.0).argmax(1)  # (F,)
        aurocs_b = auroc_matrix(pooled[half_b], onehot[half_b])

    doc_freq = Counter(w for t in texts for w in set(_words(t)))
    dead_set = set(dead)
    items: list[FeatureLabel] = []
    validated = 0
    for feature in range(width):
        if feature in dead_set:
            items.append(FeatureLabel(feature=feature, label="dead feature (never fired on held-out texts)", score=None, source="auto", validated=False))
            continue
        if best is not None and aurocs_b is not None:
            j = int(best[feature])
            score = float(aurocs_b[feature, j])
            if score == score and score >= validation_auroc:
                items.append(FeatureLabel(feature=feature, label=category_label(names[j]), score=round(score, 4), source="auto-wordnet", validated=True))
                validated += 1
                continue
        words = context_words(pooled, texts, feature, doc_freq=doc_freq)
        label = f"words: {', '.join(words)}" if words else "unlabelled (no distinctive words)"
        if feature in dense:
            label = f"dense; {label}"
        items.append(FeatureLabel(feature=feature, label=label, score=None, source="auto-context", validated=False))
    return LabelReport(labels=FeatureLabels(items), dead=dead, dense=dense, validated=validated)


# ------------------------------------------------------------------------------------------ build


def draw_samples(cfg: CorpusConfig, split: str, n: int, seed: int, scan_limit: int) -> list[Sample]:
    """A seeded draw of ``n`` windows from the first ``scan_limit`` of the split (the corpus order is fixed)."""
    # The first scan_limit windows in corpus order, then a seeded permutation: the shipped atlas was built so.
    pool = list(iter_samples(cfg.model_copy(update={"sampling": "sequential"}), split, limit=scan_limit))  # type: ignore[arg-type]
    if not pool:
        raise CorpusError(f"Corpus {cfg.source!r} has no {split!r} texts; lower heldout_fraction or add texts.")
    gen = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(pool), generator=gen)[: min(n, len(pool))].tolist()
    return [pool[i] for i in picked]


@contextlib.contextmanager
def pinned_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class BuildReport:
    seconds: float
    n_train_texts: int
    n_train_tokens: int
    n_heldout_texts: int
    l0: float
    explained_variance: float
    dead: list[int]
    dense: list[int]
    validated: int
    steps: int
    extra: dict = field(default_factory=dict)


def build_atlas(cfg: AtlasBuildConfig, *, model=None, tokenizer=None, model_id: str | None = None, name: str = "local", progress: bool = False, echo: Callable[[str], None] | None = None):
    """Collect activations, train the SAE, label its features; return ``(Atlas, BuildReport)``."""
    from atlas_align.atlas.atlas import Atlas, AtlasConfig, AtlasCorpus, SaeSource, TrainingSummary

    say = echo or (lambda _msg: None)
    start = time.perf_counter()
    if (model is None) != (tokenizer is None):
        raise ConfigError("Pass both model and tokenizer, or neither (then --model is loaded).")
    with pinned_threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        model_revision = None
        if model is None:
            from atlas_align.models.assets import canonical_model_id, load_model_and_tokenizer

            model, tokenizer = load_model_and_tokenizer(cfg.model)
            model_id = model_id or canonical_model_id(cfg.model)
            model_revision = _model_revision(cfg.model)
        else:  # a model handed in: record its id as the model to rebuild with
            cfg = cfg.model_copy(update={"model": model_id or cfg.model})
        model_id = model_id or cfg.model
        hook = resolve_hookpoint(model, cfg.layer, "resid", cfg.hookpoint)
        train = draw_samples(cfg.corpus, "train", cfg.samples, cfg.seed, cfg.scan_limit)
        heldout = draw_samples(cfg.corpus, "heldout", cfg.heldout_samples, cfg.seed + 1, cfg.scan_limit) if cfg.heldout_samples else []
        say(f"  {len(train)} training texts, {len(heldout)} held-out texts; {model_id} at {hook.path}")
        train_tokens = token_activations(model, tokenizer, hook, [s.text for s in train], batch_size=cfg.model_batch_size, max_length=cfg.max_length, progress=progress)
        held_tokens = token_activations(model, tokenizer, hook, [s.text for s in heldout], batch_size=cfg.model_batch_size, max_length=cfg.max_length, progress=progress)
        say(f"  {train_tokens.acts.shape[0]} training tokens collected ({time.perf_counter() - start:.0f}s)")
        sae, steps = train_topk_sae(
            train_tokens.acts, width=cfg.width, k=cfg.k, training_tokens=cfg.training_tokens, batch_tokens=cfg.batch_tokens,
            lr=cfg.lr, seed=cfg.seed, metadata={"model_name": model_id, "hook_name": hook.path}, progress=progress,
        )
        n_train_tokens = int(train_tokens.acts.shape[0])
        del train_tokens
        say(f"  SAE trained: {steps} steps ({time.perf_counter() - start:.0f}s)")
        l0, ev = reconstruction_stats(sae, held_tokens.acts)
        pooled = pooled_features(sae.encode, held_tokens)
        report = auto_label(
            pooled, [s.text for s in heldout], [s.category for s in heldout], seed=cfg.seed,
            validation_auroc=cfg.validation_auroc, dense_fraction=cfg.dense_fraction,
        )
    config = AtlasConfig(
        name=name,
        model_id=model_id,
        model_revision=model_revision,
        hookpoint=hook.path,
        layer=hook.layer,
        sae=SaeSource(kind="trained", architecture=sae.cfg.architecture()),
        d_in=sae.cfg.d_in,
        width=sae.cfg.d_sae,
        corpus=AtlasCorpus(
            source=cfg.corpus.source, n_train_texts=len(train), n_train_tokens=n_train_tokens, n_heldout_texts=len(heldout),
            window_words=cfg.corpus.window_words, heldout_fraction=cfg.corpus.heldout_fraction, split_salt=cfg.corpus.split_salt, seed=cfg.seed,
        ),
        training=TrainingSummary(
            architecture=sae.cfg.architecture(), k=cfg.k, steps=steps, batch_tokens=cfg.batch_tokens, lr=cfg.lr,
            l0=round(l0, 4), explained_variance=round(ev, 4), dead_features=len(report.dead), dense_features=len(report.dense),
            validated_features=report.validated, validation_auroc=cfg.validation_auroc,
        ),
        build=cfg,
    )
    atlas = Atlas(sae, config, report.labels, atlas_id=name, model=model, tokenizer=tokenizer)
    seconds = time.perf_counter() - start
    return atlas, BuildReport(
        seconds=seconds, n_train_texts=len(train), n_train_tokens=config.corpus.n_train_tokens, n_heldout_texts=len(heldout),
        l0=l0, explained_variance=ev, dead=report.dead, dense=report.dense, validated=report.validated, steps=steps,
    )


def _model_revision(name: str) -> str | None:
    """For a packaged model, the installed package that supplied the weights (the Hub revision is unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    from atlas_align.models.assets import known_model

    known = known_model(name)
    if known is None:
        return None
    pins = []
    for requirement in known.packages:
        dist = re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0]
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pins.append(requirement)
    return ",".join(pins)
