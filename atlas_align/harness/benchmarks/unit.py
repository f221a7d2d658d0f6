"""``translation_unit@1`` (the issue's ``translation@unit``): translation and localisation per word.

Two questions a sequence-level benchmark cannot ask:

**Per-unit translation.** On held-out texts, both models' per-token activations are pooled per
shared unit (:mod:`atlas_align.models.spans`: words joined wherever a token of either tokenizer
spans several), the subject's unit vectors are translated with ``T`` and compared with the
atlas SAE's true unit activations (``Atlas.encode_tokens`` per token, then pooled the same way).
Per atlas feature, positives are the units where it fires (> ``active_threshold``); AUROC and AP
are averaged over a seeded sample of ``n_features`` features with ≥ ``min_positives`` positive and
negative units (and, separately, over the validated features that qualify). Reported for max-
(``auroc``, ``ap``) and mean-pooled units (``auroc_mean``, ``ap_mean``). Control: T's columns
permuted with the seed (as in ``translation@2``); chance: AUROC 0.5, AP the positive rate.

**Localisation.** For validated noun categories, words of the category (the corpus lexicon) are
inserted into neutral sentences ("Yesterday I noticed the ___ near the old station."). The
category's score of a unit is the mean translated score of the category's validated features;
a hit is when the inserted word's unit scores highest of all units. ``localisation`` is the hit
rate; chance is the mean of 1/units; the control scores with T's columns permuted.
``atlas_localisation`` (in details) is the same rate with the atlas's *true* SAE activations — a
ceiling of sorts: how well the atlas features themselves localise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks.base import Benchmark, BenchmarkContext, BenchmarkResult, register_benchmark, validated_concepts
from atlas_align.harness.benchmarks.metrics import auroc, average_precision, nanmean
from atlas_align.harness.benchmarks.translation import shuffled_columns
from atlas_align.models.activations import ActivationExtractor
from atlas_align.models.spans import extractor_token_activations, token_source, unit_activations

TEMPLATES = (
    "Yesterday I noticed the {} near the old station.",
    "She said that the {} was mentioned in the report.",
    "In the morning we talked about the {} for a while.",
    "There is a picture of the {} on the second page.",
    "He wrote the word {} on a small card and left.",
    "Nobody expected the {} to appear in that story.",
)


class UnitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_texts: int = Field(200, gt=0, description="held-out texts read token by token (the first n of the held-out sample)")
    n_features: int = Field(100, gt=0, description="seeded sample of eligible atlas features")
    min_positives: int = Field(5, ge=1, description="a feature needs ≥ k positive and ≥ k negative units")
    active_threshold: float = 0.0
    n_categories: int = Field(20, ge=0, description="validated noun categories in the localisation test (0 = skip it)")
    words_per_category: int = Field(5, gt=0)
    templates: tuple[str, ...] = TEMPLATES
    max_length: int = Field(128, gt=2)
    batch_size: int = Field(8, gt=0)


def _scores_table(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return auroc(scores, y), average_precision(scores, y)


@register_benchmark
class UnitTranslationBenchmark(Benchmark):
    __doc__ = __doc__
    name = "translation_unit"
    version = 1
    Config = UnitConfig

    def _tokens(self, extractor: ActivationExtractor, texts: list[str]):
        """Per-token activations, remembered per (extractor, texts): one instance scores several alignments of one subject in one pass."""
        memo = self.__dict__.setdefault("_memo", {})
        key = (id(extractor), tuple(texts))
        if key not in memo:  # the extractor is kept with its activations, so its id is never reused meanwhile
            memo[key] = (extractor, extractor_token_activations(extractor, texts, max_length=self.config.max_length, batch_size=self.config.batch_size))
        return memo[key][1]

    def not_applicable(self, ctx: BenchmarkContext) -> str | None:
        if token_source(ctx.subject) is None or token_source(ctx.atlas) is None:
            return "translation_unit needs the subject and atlas models themselves (per-token activations), not precomputed pooled spaces."
        return None

    def run(self, ctx: BenchmarkContext) -> BenchmarkResult:
        cfg = self.config
        subject, atlas = token_source(ctx.subject), token_source(ctx.atlas)
        if subject is None or atlas is None:
            raise ConfigError(self.not_applicable(ctx) or "translation_unit cannot run here.")
        al = ctx.alignment
        texts = ctx.heldout_texts()[: cfg.n_texts]
        perm = shuffled_columns(al.config.d_c, ctx.seed)
        # ---- per-unit translation on held-out text
        pred: dict[str, list[torch.Tensor]] = {"max": [], "mean": []}
        true: dict[str, list[torch.Tensor]] = {"max": [], "mean": []}
        n_units = []
        for s_acts, a_acts in zip(self._tokens(subject, texts), self._tokens(atlas, texts)):
            for reduce in ("max", "mean"):
                units, (su, au) = unit_activations([s_acts, a_acts], reduce)
                if reduce == "max":
                    n_units.append(len(units))
                if len(units):
                    pred[reduce].append(al.translate_to_atlas(su))
                    true[reduce].append(au)
        if not pred["max"]:
            raise ConfigError("No held-out text has a unit both tokenizers cover; check the held-out texts.")
        metrics: dict[str, float] = {}
        controls: dict[str, float] = {}
        chance: dict[str, float] = {}
        details: list[dict[str, Any]] = []
        validated_ids = {x.feature for x in ctx.labels.validated()}
        rng = np.random.default_rng(ctx.seed)
        sampled = None
        for reduce, tag in (("max", ""), ("mean", "_mean")):
            scores = torch.cat(pred[reduce]).double().numpy()
            active = (torch.cat(true[reduce]) > cfg.active_threshold).numpy()
            n_pos = active.sum(0)
            eligible = np.flatnonzero((n_pos >= cfg.min_positives) & (len(active) - n_pos >= cfg.min_positives))
            if eligible.size == 0:
                raise ConfigError(f"No atlas feature fires on ≥ {cfg.min_positives} and stays silent on ≥ {cfg.min_positives} of {len(active)} units; use more texts.")
            if sampled is None:  # the same features for both poolings (drawn from the max-pooled eligible set)
                sampled = np.sort(rng.choice(eligible, size=min(cfg.n_features, eligible.size), replace=False))
            validated = np.array(sorted(set(eligible.tolist()) & validated_ids), dtype=np.int64)
            for suffix, subset in (("", np.intersect1d(sampled, eligible)), ("_validated", validated)):
                if subset.size == 0:
                    continue
                y = active[:, subset]
                fitted_auc, fitted_ap = _scores_table(scores[:, subset], y)
                control_auc, control_ap = _scores_table(scores[:, perm.numpy()[subset]], y)
                key = f"{tag}{suffix}"
                metrics[f"auroc{key}"], metrics[f"ap{key}"] = nanmean(fitted_auc), nanmean(fitted_ap)
                controls[f"auroc{key}"], controls[f"ap{key}"] = nanmean(control_auc), nanmean(control_ap)
                chance[f"auroc{key}"], chance[f"ap{key}"] = 0.5, nanmean(y.mean(0))
                if reduce == "max" and suffix == "":
                    labels = ctx.labels
                    for i, f in enumerate(subset.tolist()):
                        label = labels.get(f)
                        details.append({
                            "feature": f, "label": label.label if label else None, "n_positive_units": int(n_pos[f]),
                            "auroc": float(fitted_auc[i]), "ap": float(fitted_ap[i]), "control_auroc": float(control_auc[i]), "control_ap": float(control_ap[i]),
                        })  # fmt: skip
        metrics["n_units"] = float(sum(n_units))
        metrics["n_texts"] = float(len(texts))
        metrics["n_features"] = float(0 if sampled is None else sampled.size)
        # ---- localisation
        loc = self._localisation(ctx, subject, atlas, perm)
        if loc is not None:
            metrics["localisation"], controls["localisation"], chance["localisation"] = loc["hit"], loc["control"], loc["chance"]
            metrics["n_localisation"] = float(loc["n"])
            details.append({"localisation": loc})
        all_texts = texts + (loc["texts"] if loc is not None else [])
        if loc is not None:
            del loc["texts"]
        return self._result(ctx, all_texts, metrics=metrics, controls=controls, chance=chance, details=details)

    def localisation_items(self, ctx: BenchmarkContext) -> list[tuple[str, str, str, list[int]]]:
        """(text, inserted word, category, category features) for the localisation test, seeded."""
        from atlas_align.harness.benchmarks.judges import category_lexicon

        cfg = self.config
        concepts = {c: f for c, f in validated_concepts(ctx.labels).items() if c.startswith("noun.")}
        if not concepts or cfg.n_categories == 0:
            return []
        rows = ctx.lexicon_rows
        if rows is None:
            from atlas_align.corpus.builtin import load_default_corpus

            rows = load_default_corpus()
        lexicon = category_lexicon(rows)
        rng = np.random.default_rng(ctx.seed)
        usable = [c for c in concepts if len(lexicon.get(c, ())) >= cfg.words_per_category]
        chosen = sorted(rng.choice(usable, size=min(cfg.n_categories, len(usable)), replace=False).tolist()) if usable else []
        items = []
        for category in chosen:
            words = sorted(lexicon[category])
            for word in rng.choice(words, size=cfg.words_per_category, replace=False).tolist():
                template = cfg.templates[int(rng.integers(len(cfg.templates)))]
                items.append((template.format(word), word, category, concepts[category]))
        return items

    def _localisation(self, ctx: BenchmarkContext, subject: ActivationExtractor, atlas: ActivationExtractor, perm: torch.Tensor) -> dict[str, Any] | None:
        items = self.localisation_items(ctx)
        if not items:
            return None
        texts = [t for t, *_ in items]
        hits, control_hits, atlas_hits, inverse_units, per_category = [], [], [], [], {}
        for (text, word, category, features), s_acts, a_acts in zip(items, self._tokens(subject, texts), self._tokens(atlas, texts)):
            units, (su, au) = unit_activations([s_acts, a_acts], "max")
            start = text.index(" " + word + " ") + 1 if f" {word} " in text else text.index(word)
            target = [i for i, (s, e) in enumerate(units.units) if (s, e) == (start, start + len(word))]
            if not target or len(units) < 2:
                continue  # the word is not one shared unit (a tokenizer merged it with a neighbour)
            idx = torch.tensor(features)
            scores = ctx.alignment.translate_to_atlas(su)
            hit = int(scores[:, idx].mean(1).argmax()) == target[0]
            hits.append(hit)
            control_hits.append(int(scores[:, perm[idx]].mean(1).argmax()) == target[0])
            atlas_hits.append(int(au[:, idx].mean(1).argmax()) == target[0])
            inverse_units.append(1.0 / len(units))
            per_category.setdefault(category, []).append(hit)
        if not hits:
            return None
        return {
            "hit": float(np.mean(hits)), "control": float(np.mean(control_hits)), "chance": float(np.mean(inverse_units)),
            "atlas_localisation": float(np.mean(atlas_hits)), "n": len(hits),
            "per_category": {c: float(np.mean(v)) for c, v in sorted(per_category.items())}, "texts": texts,
        }  # fmt: skip
