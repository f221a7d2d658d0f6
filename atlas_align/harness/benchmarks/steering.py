"""``steering@2``: does steering along a translated concept direction make the subject express it?

Protocol (paper Table 5; faithfulness as in FADE): for a few concepts (validated atlas features
grouped by ground-truth category) and strengths λ, the subject (a causal LM) continues neutral
prompts with and without ``alignment.steer(model, concept_features, λ)`` at the alignment's
hookpoint; greedy decoding by default (seeded sampling optional), ``max_new_tokens`` tokens.
Strengths are relative, as everywhere in atlas-align (:func:`atlas_align.models.steering.steer`):
multiples of the median per-token activation norm at the hookpoint, measured once on the prompts
(``strength_unit="norm"``; first position excluded), or absolute (``"absolute"``).

Each judge rates every continuation 0/1/2. A fluency guard applies first: a continuation whose
perplexity under the unsteered model exceeds ``perplexity_factor`` × the median perplexity of
the unsteered continuations counts as 0, and so does one whose distinct tokens are fewer than
``min_distinct_fraction`` of its tokens (repetition such as "and and and" has a *low* perplexity).
With p₂(λ) = share rated 2,
**faithfulness = (max_λ p₂(λ) − p₂(0)) / (1 − p₂(0))** (λ = 0 included, so it lies in [0, 1];
0 when p₂(0) = 1), averaged over concepts. Control: the same with the shuffled-T direction
(T's columns permuted with the seed); chance: 0 (no change over unsteered).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks.base import (
    Benchmark,
    BenchmarkContext,
    BenchmarkResult,
    label_category,
    register_benchmark,
    validated_concepts,
)
from atlas_align.harness.benchmarks.judges import Judge, SteeringConcept, get_judge
from atlas_align.harness.benchmarks.translation import shuffled_columns
from atlas_align.models.steering import REFERENCE_PROMPTS, median_token_norm

NEUTRAL_PROMPTS = REFERENCE_PROMPTS
PREFERRED_CONCEPTS = ("noun.animal", "noun.food", "noun.plant", "noun.body", "noun.artifact")


class SteeringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concepts: list[str] | None = Field(None, description="categories; default: up to n_concepts of PREFERRED_CONCEPTS, then a seeded pick")
    n_concepts: int = Field(4, gt=0)
    strengths: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4])
    strength_unit: Literal["norm", "absolute"] = "norm"
    prompts: list[str] = Field(default_factory=lambda: list(NEUTRAL_PROMPTS))
    max_new_tokens: int = Field(20, gt=0)
    sampling: bool = False
    temperature: float = Field(1.0, gt=0)
    judges: list[str] = Field(default_factory=lambda: ["lexicon", "atlas"])
    judge_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    perplexity_factor: float = Field(3.0, gt=0, description="k: perplexity above k × unsteered median → not fluent")
    min_distinct_fraction: float = Field(0.3, ge=0, le=1, description="fewer distinct tokens than this share → repetition, not fluent")
    control: bool = True

    @field_validator("strengths")
    @classmethod
    def _with_zero(cls, value: list[float]) -> list[float]:
        return sorted(set(value) | {0.0})


def faithfulness(p2_by_strength: dict[float, float]) -> float:
    """FADE: (max_λ p₂(λ) − p₂(0)) / (1 − p₂(0)); 0 when p₂(0) = 1."""
    base = p2_by_strength[0.0]
    if base >= 1.0:
        return 0.0
    return (max(p2_by_strength.values()) - base) / (1.0 - base)


class Generation(BaseModel):
    prompt: str
    text: str
    token_ids: list[int]
    perplexity: float = math.nan


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, sampling: bool = False, temperature: float = 1.0, seed: int = 0) -> list[Generation]:
    """Continue each prompt (left-padded batch). Call it inside a steering context to steer it;
    :func:`perplexities` scores the continuations afterwards, unsteered."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    device = next(model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    if sampling:
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    eos = tokenizer.eos_token_id
    results = []
    for prompt, ids in zip(prompts, new):
        if eos is not None and eos in ids:
            ids = ids[: ids.index(eos)]
        results.append(Generation(prompt=prompt, text=tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids))
    return results


def _distinct_fraction(token_ids: Sequence[int]) -> float:
    return len(set(token_ids)) / len(token_ids) if token_ids else 0.0


@torch.inference_mode()
def perplexities(model, tokenizer, generations: Sequence[Generation]) -> list[float]:
    """exp(mean NLL) of each continuation given its prompt; ``inf`` for an empty continuation."""
    device = next(model.parameters()).device
    values = []
    for g in generations:
        prompt_ids = tokenizer(g.prompt)["input_ids"]
        new_ids = g.token_ids
        if not new_ids:
            values.append(math.inf)
            continue
        ids = torch.tensor([prompt_ids + new_ids], device=device)
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].double()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids) :], reduction="mean")
        values.append(float(torch.exp(nll)))
    return values


@register_benchmark
class SteeringBenchmark(Benchmark):
    __doc__ = __doc__
    name = "steering"
    version = 2
    Config = SteeringConfig

    def __init__(self, judge_instances: dict[str, Judge] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.judge_instances = judge_instances or {}

    def select_concepts(self, ctx: BenchmarkContext) -> list[SteeringConcept]:
        available = validated_concepts(ctx.labels)
        if not available:
            raise ConfigError("steering needs validated atlas features with a category label; this alignment's atlas has none.")
        cfg = self.config
        if cfg.concepts is not None:
            unknown = [c for c in cfg.concepts if c not in available]
            if unknown:
                raise ConfigError(f"No validated atlas feature has category {', '.join(unknown)}; available: {', '.join(available)}.")
            chosen = list(cfg.concepts)
        else:
            chosen = [c for c in PREFERRED_CONCEPTS if c in available][: cfg.n_concepts]
            rest = sorted(set(available) - set(chosen))
            if len(chosen) < cfg.n_concepts and rest:
                rng = np.random.default_rng(ctx.seed)
                chosen += sorted(rng.choice(rest, size=min(len(rest), cfg.n_concepts - len(chosen)), replace=False).tolist())
        concepts = []
        for category in chosen:
            features = tuple(available[category])
            label = ctx.labels.get(features[0])
            description = label.label if label is not None and label_category(label) == category else category
            concepts.append(SteeringConcept(category=category, features=features, description=description))
        return concepts

    def run(self, ctx: BenchmarkContext) -> BenchmarkResult:
        cfg = self.config
        if ctx.model is None or ctx.tokenizer is None:
            raise ConfigError("steering needs the subject as a causal LM (ctx.model, ctx.tokenizer).")
        model, tokenizer, alignment = ctx.model, ctx.tokenizer, ctx.alignment
        concepts = self.select_concepts(ctx)
        judges = {name: self.judge_instances.get(name) or get_judge(name, **cfg.judge_params.get(name, {})) for name in cfg.judges}
        for judge in judges.values():
            judge.prepare(ctx, concepts)
        hookpoint = alignment.config.subject.hookpoint
        unit = median_token_norm(model, tokenizer, hookpoint, cfg.prompts) if cfg.strength_unit == "norm" else 1.0
        arms = {"fitted": alignment}
        if cfg.control:
            perm = shuffled_columns(alignment.config.d_c, ctx.seed)
            arms["control"] = type(alignment)(alignment.config, alignment.T[:, perm], alignment.subject_shift, alignment.subject_scale, alignment.labels)
        gen_kwargs = {"max_new_tokens": cfg.max_new_tokens, "sampling": cfg.sampling, "temperature": cfg.temperature, "seed": ctx.seed}

        unsteered = generate(model, tokenizer, cfg.prompts, **gen_kwargs)
        for g, ppl in zip(unsteered, perplexities(model, tokenizer, unsteered)):
            g.perplexity = ppl
        max_ppl = cfg.perplexity_factor * float(np.median([g.perplexity for g in unsteered]))
        steered: dict[tuple[str, str, float], list[Generation]] = {}
        for concept in concepts:
            for arm, al in arms.items():
                steered[(concept.category, arm, 0.0)] = unsteered
                for strength in cfg.strengths:
                    if strength == 0.0:
                        continue
                    with al.steer(model, list(concept.features), strength=strength, unit=unit, absolute=cfg.strength_unit == "absolute"):
                        gens = generate(model, tokenizer, cfg.prompts, **gen_kwargs)
                    for g, ppl in zip(gens, perplexities(model, tokenizer, gens)):
                        g.perplexity = ppl
                    steered[(concept.category, arm, strength)] = gens

        details, table = [], []
        p2: dict[tuple[str, str, str], dict[float, float]] = {}
        for concept in concepts:
            for strength in cfg.strengths:
                row: dict[str, Any] = {"concept": concept.category, "strength": strength, "lambda": strength * unit}
                for arm in arms:
                    gens = steered[(concept.category, arm, strength)]
                    fluent = [g.perplexity <= max_ppl and _distinct_fraction(g.token_ids) >= cfg.min_distinct_fraction for g in gens]
                    suffix = "" if arm == "fitted" else "_control"
                    row[f"fluent{suffix}"] = float(np.mean(fluent))
                    ratings = {name: judge.rate([g.text for g in gens], concept) for name, judge in judges.items()}
                    for name, values in ratings.items():
                        effective = [r if ok else 0 for r, ok in zip(values, fluent)]
                        share = float(np.mean([r == 2 for r in effective]))
                        p2.setdefault((concept.category, arm, name), {})[strength] = share
                        row[f"p2_{name}{suffix}"] = share
                    if strength != 0.0 or arm == "fitted":
                        details += [
                            {"concept": concept.category, "arm": "unsteered" if strength == 0.0 else arm, "strength": strength,
                             "prompt": g.prompt, "text": g.text, "perplexity": g.perplexity, "fluent": ok,
                             "ratings": {name: ratings[name][i] for name in judges}}
                            for i, (g, ok) in enumerate(zip(gens, fluent))
                        ]  # fmt: skip
                row["example"] = steered[(concept.category, "fitted", strength)][0].text
                table.append(row)

        metrics: dict[str, float] = {}
        controls: dict[str, float] = {}
        chance: dict[str, float] = {}
        for name in judges:
            for arm, target in (("fitted", metrics), ("control", controls)):
                if arm not in arms:
                    continue
                per_concept = [p2[(c.category, arm, name)] for c in concepts]
                target[f"faithfulness_{name}"] = float(np.mean([faithfulness(p) for p in per_concept]))
                target[f"p2_best_{name}"] = float(np.mean([max(v for s, v in p.items() if s != 0.0) if len(p) > 1 else p[0.0] for p in per_concept]))
            metrics[f"p2_unsteered_{name}"] = float(np.mean([p2[(c.category, "fitted", name)][0.0] for c in concepts]))
            chance[f"faithfulness_{name}"] = 0.0
        texts = [g.prompt for g in unsteered]
        metrics["median_perplexity_unsteered"] = float(np.median([g.perplexity for g in unsteered]))
        metrics["strength_unit"] = unit
        return self._result(ctx, texts, metrics=metrics, controls=controls, chance=chance, details=details, table=table)
