"""``steering@3``: does steering along a translated concept direction make the subject express it
while it still follows instructions fluently? (AxBench-style judging, FADE faithfulness.)

**Prompts.** A fixed set of 24 short, neutral instructions (:mod:`.instructions`; ``instructions``
replaces them) is split with the seed into a *tuning* and a *held-out* half (``tuning_fraction``; or
``heldout_instructions`` gives the held-out half explicitly). The subject sees each instruction
through its chat template (one user turn, generation prompt added) when its tokenizer has one,
else as ``prompt_template`` (``"Instruction: {instruction}\\nResponse:"``). Each split is generated
in its own batches (left-padded; greedy by default, seeded sampling optional), ``max_new_tokens``
tokens, cut at the first end-of-sequence token.

**Methods** (``methods``), on the same prompts, concepts and strength grid:

- ``atlas``: the concept's direction through the fitted T, ``alignment.concept_direction(features)``;
- ``diffmean``: the subject's own mean difference — mean of ``ctx.subject_pooled`` over the corpus
  held-out texts of the concept's category minus the mean over the other held-out texts, unit norm;
- ``control``: the atlas direction through T with its columns permuted by the seed (shuffled T);
- ``prompt``: no vector; the instruction gets " Talk about <concept>." appended (strength 0 only);
- ``unsteered``: no vector, plain instruction (always run: it calibrates the judges).

The vector methods steer with the norm-preserving add of :func:`atlas_align.models.steering.steer`
at the alignment's hookpoint, λ = strength × unit with unit = the median per-token activation norm
on the tuning prompts (``strength_unit="norm"``; first position excluded) or 1 (``"absolute"``).

**Rating.** Every generation gets three ratings in {0, 1, 2} (:mod:`.judges`): *concept* (each of
``judges``; the first is the primary one), *instruction* relevance (``instruction_judge``) and
*fluency* (``fluency_judge``). Defaults: the ``atlas`` relevance judge (cosine of instruction and
response in the atlas's pooled space; 2 at or above the 90th percentile of mismatched
instruction/response pairs of the unsteered tuning responses, 1 at or above their median) and the
``perplexity`` fluency judge (perplexity under the unsteered subject: 2 when ≤ k·m, 1 when ≤ 2k·m,
0 otherwise, with m the median over the unsteered tuning continuations and k =
``perplexity_factor``; distinct tokens below ``min_distinct_fraction`` of the tokens, or no tokens,
give 0). The **AxBench score** of a generation is the harmonic mean of its three ratings with the
primary concept judge, 3 / (1/c + 1/i + 1/f), and 0 when any rating is 0 (range 0–2). A generation
is *fluent* when its fluency is ≥ 1.

**Strengths.** ``strengths`` (relative unless ``strength_unit="absolute"``) is the grid when given.
Otherwise the grid is found per model on the tuning prompts: with the first vector method's
direction for the first concept, strengths ``edge_start``·2^k (k = 0 … ``edge_steps`` − 1) are tried
in increasing order until the fluent share first falls below ``edge_min_fluent``; the *fluency edge*
is the last strength before that (the first one when even it fails, the last one when none does),
and the grid is edge × ``grid_fractions`` (0.25, 0.5, 1). For each vector method, the strength
with the highest mean AxBench score on the **tuning** split is chosen (ties: the smaller one); the
held-out split never enters the choice — not the unit, the judges' calibration nor the edge. A
one-strength grid has nothing to choose, so its tuning split is generated unsteered only (for the
judges' calibration).

**Metrics** (held-out split, each method at its chosen strength):

- ``axbench_<m>``, ``concept_<m>``, ``instruction_<m>``, ``fluency_<m>`` — mean AxBench score and
  mean ratings (0–2; concept by the primary judge) for m in atlas, diffmean, prompt, unsteered;
  ``strength_<m>`` (relative) and ``lambda_<m>`` (= strength × unit, the added vector's norm) for
  atlas and diffmean. The shuffled-T ``control`` arm's values sit in ``controls`` under the atlas
  keys (``controls["axbench_atlas"]`` …). ``axbench_atlas`` is the headline.
- ``faithfulness_<judge>`` (FADE, atlas direction; its control in ``controls``, chance 0):
  (max_λ p₂(λ) − p₂(0)) / (1 − p₂(0)) over the grid with λ = 0 (unsteered) included, p₂ = the
  held-out share rated 2 by that judge *and* fluent; 0 when p₂(0) = 1; averaged over concepts.
  Also ``p2_best_<judge>`` (max over non-zero strengths) and ``p2_unsteered_<judge>``.
- ``kappa_<a>_<b>``: Cohen's κ (``kappa_weights``: none, linear or quadratic) between concept
  judges a and b over every rated generation (both splits, all methods); left out when undefined.
- ``fluency_edge`` (when searched), ``strength_unit``, ``n_tuning``, ``n_heldout``, the judges'
  calibration (``median_perplexity_unsteered``; ``relevance_*`` levels and mean cosines) and
  ``llm_prompt_version`` when an llm judge ran.

``chance["axbench_atlas"]`` is the unsteered held-out AxBench score (no steering at all).
Judge settings: ``judge_params[name]`` for a concept judge (and for the same class in another role,
i.e. the llm judge), ``instruction_judge_params`` / ``fluency_judge_params`` on top for those roles;
the perplexity judge takes ``perplexity_factor`` and ``min_distinct_fraction`` from the config.
``table`` has one row per (method, strength, split) with the means over concepts (and per concept
in ``by_concept``); ``details`` has every rated generation. The provenance fingerprints the
instructions (tuning, then held-out) followed by the corpus held-out texts (atlas judge, diffmean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atlas_align.errors import ConfigError, UnknownNameError
from atlas_align.harness.benchmarks.base import (
    Benchmark,
    BenchmarkContext,
    BenchmarkResult,
    label_category,
    register_benchmark,
    validated_concepts,
)
from atlas_align.harness.benchmarks.instructions import INSTRUCTIONS, PLAIN_TEMPLATE, format_prompt, split_instructions, starts_with_bos, with_concept
from atlas_align.harness.benchmarks.judges import (
    FLUENCY_JUDGES,
    INSTRUCTION_JUDGES,
    JUDGES,
    PROMPT_VERSION,
    LLMJudge,
    SteeringConcept,
    cohen_kappa,
    pad_id,
)
from atlas_align.harness.benchmarks.translation import shuffled_columns
from atlas_align.models.steering import median_token_norm, steer

PREFERRED_CONCEPTS = ("noun.animal", "noun.food", "noun.plant", "noun.body", "noun.artifact")
METHODS = ("atlas", "diffmean", "prompt", "control", "unsteered")
VECTOR_METHODS = ("atlas", "diffmean", "control")
SPLITS = ("tuning", "heldout")


class SteeringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concepts: list[str] | None = Field(None, description="categories; default: up to n_concepts of PREFERRED_CONCEPTS, then a seeded pick")
    n_concepts: int = Field(3, gt=0)
    methods: list[str] = Field(default_factory=lambda: list(METHODS), description=f"arms among {', '.join(METHODS)}")
    instructions: list[str] | None = Field(None, description="instruction pool (default: the 24 built-in ones), split by the seed")
    heldout_instructions: list[str] | None = Field(None, description="held-out instructions; then `instructions` are all tuning")
    tuning_fraction: float = Field(0.5, gt=0, lt=1)
    chat_template: bool = Field(True, description="use the subject tokenizer's chat template when it has one")
    prompt_template: str = Field(PLAIN_TEMPLATE, description="prompt for a subject without a chat template")
    strengths: list[float] | None = Field(None, description="explicit grid (relative unless strength_unit='absolute'); default: found per model")
    strength_unit: Literal["norm", "absolute"] = "norm"
    edge_start: float = Field(0.01, gt=0)
    edge_steps: int = Field(9, ge=1, description="fluency-edge search over edge_start·2^k, k < edge_steps")
    edge_min_fluent: float = Field(0.5, ge=0, le=1, description="fluent share (fluency ≥ 1) the edge must keep")
    grid_fractions: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0], description="grid = fluency edge × these")
    max_new_tokens: int = Field(24, gt=0)
    sampling: bool = False
    temperature: float = Field(1.0, gt=0)
    judges: list[str] = Field(default_factory=lambda: ["lexicon", "atlas"], description="concept judges; the first scores AxBench and picks λ")
    judge_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    instruction_judge: str = "atlas"
    instruction_judge_params: dict[str, Any] = Field(default_factory=dict)
    fluency_judge: str = "perplexity"
    fluency_judge_params: dict[str, Any] = Field(default_factory=dict)
    perplexity_factor: float = Field(3.0, gt=0, description="k: perplexity above k × unsteered median → fluency 1, above 2k → 0")
    min_distinct_fraction: float = Field(0.3, ge=0, le=1, description="fewer distinct tokens than this share → repetition, fluency 0")
    kappa_weights: Literal["linear", "quadratic"] | None = None

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in METHODS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(f"methods must be distinct names among {', '.join(METHODS)}; got {value}.")
        return value

    @field_validator("judges")
    @classmethod
    def _some_judges(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"judges must name at least one concept judge, each once; got {value}.")
        return value

    @field_validator("strengths")
    @classmethod
    def _positive_strengths(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if any(not math.isfinite(s) or s < 0 for s in value):
            raise ValueError(f"strengths must be finite and ≥ 0; got {value}.")
        grid = sorted(set(value) - {0.0})  # λ = 0 is the unsteered arm, always run
        if not grid:
            raise ValueError("strengths needs at least one strength > 0 (0, the unsteered arm, is always included).")
        return grid

    @field_validator("grid_fractions")
    @classmethod
    def _positive_fractions(cls, value: list[float]) -> list[float]:
        if not value or any(not math.isfinite(f) or f <= 0 for f in value):
            raise ValueError(f"grid_fractions must be positive numbers; got {value}.")
        return sorted(set(value))

    @field_validator("instructions", "heldout_instructions")
    @classmethod
    def _non_empty_instructions(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not t.strip() for t in value)):
            raise ValueError("instructions must be a non-empty list of non-empty strings.")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{instruction}" not in value:
            raise ValueError("prompt_template must contain '{instruction}'.")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SteeringConfig:
        if "control" in self.methods and "atlas" not in self.methods:
            raise ValueError("the 'control' method (shuffled T) is the atlas method's control; add 'atlas' to methods.")
        if self.heldout_instructions is None and self.instructions is not None and len(self.instructions) < 2:
            raise ValueError("instructions needs at least 2 entries to split into tuning and held-out halves (or give heldout_instructions).")
        return self


# ------------------------------------------------------------------------------------- scoring


def axbench_score(concept: float, instruction: float, fluency: float) -> float:
    """Harmonic mean of the three 0–2 ratings; 0 when any of them is 0."""
    ratings = (concept, instruction, fluency)
    if any(r <= 0 for r in ratings):
        return 0.0
    return len(ratings) / sum(1.0 / r for r in ratings)


def faithfulness(p2_by_strength: dict[float, float]) -> float:
    """FADE: (max_λ p₂(λ) − p₂(0)) / (1 − p₂(0)); 0 when p₂(0) = 1."""
    base = p2_by_strength[0.0]
    if base >= 1.0:
        return 0.0
    return (max(p2_by_strength.values()) - base) / (1.0 - base)


def fluency_edge(strengths: Sequence[float], fluent_share: Callable[[float], float], min_share: float = 0.5) -> tuple[float, list[tuple[float, float]]]:
    """The largest strength, scanning ``strengths`` upward, before the fluent share first drops below
    ``min_share`` (scanning stops there); the first strength when even it fails. Returns it and the
    (strength, share) pairs tried."""
    if not strengths:
        raise ConfigError("The fluency-edge search needs at least one strength.")
    tried: list[tuple[float, float]] = []
    edge = strengths[0]
    for strength in strengths:
        share = float(fluent_share(strength))
        tried.append((strength, share))
        if share < min_share:
            break
        edge = strength
    return edge, tried


def choose_strength(scores: Mapping[float, float]) -> float:
    """The strength with the highest (tuning) score; ties go to the smaller strength."""
    if not scores:
        raise ConfigError("No strength to choose from.")
    return min(scores, key=lambda s: (-scores[s], s))


def diffmean_direction(ctx: BenchmarkContext, category: str) -> torch.Tensor:
    """Unit vector: mean subject pooled activation over held-out texts of ``category`` minus the mean over the others."""
    if ctx.subject is None:
        raise ConfigError("The diffmean method needs the subject's pooled activations (ctx.subject); drop it from methods.")
    categories = [getattr(s, "category", None) for s in ctx.heldout]
    own = torch.tensor([c == category for c in categories], dtype=torch.bool)
    if not own.any() or own.all():
        raise ConfigError(
            f"The diffmean method needs held-out texts of category {category} and of other categories; "
            f"got {int(own.sum())} of {len(categories)}. Use more held-out samples or drop diffmean from methods."
        )
    pooled = ctx.subject_pooled(ctx.heldout_texts()).double()
    difference = pooled[own].mean(0) - pooled[~own].mean(0)
    norm = difference.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ConfigError(f"The diffmean direction for {category} is zero or not finite.")
    return (difference / norm).float()


# ------------------------------------------------------------------------------------- generation


class Generation(BaseModel):
    instruction: str = ""
    prompt: str
    text: str
    token_ids: list[int]
    prompt_ids: list[int] = Field(default_factory=list)
    perplexity: float = math.nan


def _stop_ids(model, tokenizer) -> set[int]:
    stops = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        stops |= set(configured) if isinstance(configured, list | tuple) else {configured}
    return {int(s) for s in stops}


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, sampling: bool = False, temperature: float = 1.0, seed: int = 0,
    instructions: Sequence[str] | None = None,
) -> list[Generation]:  # fmt: skip
    """Continue each prompt (one left-padded batch), cut at the first end-of-sequence token. Call it
    inside a steering context to steer it; rate fluency afterwards, unsteered. Prompts that already
    start with BOS (a chat template's) get no second one."""
    prompts = list(prompts)
    if not prompts:
        return []
    special = not starts_with_bos(tokenizer, prompts)
    encoded = [tokenizer(p, add_special_tokens=special)["input_ids"] for p in prompts]
    pad = pad_id(tokenizer)
    length = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(prompts), length), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, length - len(ids) :] = 1
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad}
    if sampling:
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
    new = out[:, length:].tolist()
    stops = _stop_ids(model, tokenizer)
    results = []
    for i, (prompt, ids) in enumerate(zip(prompts, new)):
        cut = next((k for k, t in enumerate(ids) if t in stops), len(ids))
        ids = ids[:cut]
        results.append(Generation(
            instruction=instructions[i] if instructions is not None else "", prompt=prompt,
            text=tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids, prompt_ids=encoded[i],
        ))  # fmt: skip
    return results


# Unsteered generations depend on the model's weights, the prompts and the decoding settings only — not on
# the alignment or the layer — so every row of one subject (a board: k layers × m methods) shares them.
_UNSTEERED: dict[tuple, list[Generation]] = {}
_UNSTEERED_ENTRIES = 16


def weights_fingerprint(model) -> tuple:
    """A cheap identity of a model's weights: its class, parameter count and a few values of its first and last tensors."""
    params = list(model.parameters())
    sample = [tuple(float(x) for x in t.detach().reshape(-1)[:16].tolist()) for t in (params[0], params[-1])] if params else []
    return (type(model).__name__, sum(t.numel() for t in params), *sample)


def generate_unsteered(model, tokenizer, prompts: Sequence[str], **kwargs) -> list[Generation]:
    """:func:`generate` with no steering, memoised per (weights, prompts, settings); returns fresh copies."""
    settings = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    key = (generate, weights_fingerprint(model), tuple(prompts), settings)  # the function too: tests replace it
    if key not in _UNSTEERED:
        if len(_UNSTEERED) >= _UNSTEERED_ENTRIES:
            _UNSTEERED.pop(next(iter(_UNSTEERED)))
        _UNSTEERED[key] = generate(model, tokenizer, prompts, **kwargs)
    return [g.model_copy(deep=True) for g in _UNSTEERED[key]]


def _without_bos(tokenizer, prompts: Sequence[str]) -> list[str]:
    """Prompts whose chat template wrote the BOS token, without it: ``median_token_norm`` tokenises with
    special tokens, so it sees the same tokens as :func:`generate`."""
    if not starts_with_bos(tokenizer, prompts):
        return list(prompts)
    return [p[len(tokenizer.bos_token) :] for p in prompts]


@dataclass
class RatedSet:
    """The generations of one (method, concept, strength, split) and their ratings."""

    method: str
    concept: str
    strength: float
    split: str
    generations: list[Generation]
    concept_ratings: dict[str, list[int]]
    instruction: list[int]
    fluency: list[int]

    def axbench(self, judge: str) -> list[float]:
        return [axbench_score(c, i, f) for c, i, f in zip(self.concept_ratings[judge], self.instruction, self.fluency)]

    def p2(self, judge: str) -> float:
        """Share rated 2 by ``judge`` and fluent (fluency ≥ 1)."""
        return float(np.mean([c == 2 and f >= 1 for c, f in zip(self.concept_ratings[judge], self.fluency)]))


# ------------------------------------------------------------------------------------- benchmark


@register_benchmark
class SteeringBenchmark(Benchmark):
    __doc__ = __doc__
    name = "steering"
    version = 3
    Config = SteeringConfig

    def __init__(self, judge_instances: dict[str, Any] | None = None, **params: Any) -> None:
        """``judge_instances`` maps a judge name to a ready instance, used for every role (concept,
        instruction, fluency) that names it."""
        super().__init__(**params)
        self.judge_instances = judge_instances or {}
        cfg = self.config
        roles = [(JUDGES, name) for name in cfg.judges] + [(INSTRUCTION_JUDGES, cfg.instruction_judge), (FLUENCY_JUDGES, cfg.fluency_judge)]
        for registry, name in roles:
            if name not in self.judge_instances and name not in registry:
                try:
                    registry.get(name)
                except UnknownNameError as exc:
                    raise ConfigError(f"Invalid settings for benchmark {self.key}: {exc.args[0]}") from None

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

    def instruction_splits(self, seed: int) -> tuple[list[str], list[str]]:
        """(tuning, held-out) instructions: ``heldout_instructions`` when given, else the seeded split."""
        cfg = self.config
        pool = list(cfg.instructions) if cfg.instructions is not None else list(INSTRUCTIONS)
        if cfg.heldout_instructions is not None:
            return pool, list(cfg.heldout_instructions)
        return split_instructions(pool, seed, cfg.tuning_fraction)

    def format(self, tokenizer, instruction: str) -> str:
        return format_prompt(tokenizer, instruction, chat_template=self.config.chat_template, template=self.config.prompt_template)

    def _judges(self) -> Callable[..., Any]:
        """A factory of judges: ``judge_params[name]`` configures a concept judge, and also the same class
        in another role (the llm judge), where the role's own params come on top. One instance serves
        every role whose class and settings agree (one llm loaded once)."""
        made: list[tuple[type, dict[str, Any], Any]] = []
        params_of = self.config.judge_params

        def make(name: str, registry: Any, defaults: dict[str, Any] | None = None, role: dict[str, Any] | None = None) -> Any:
            if name in self.judge_instances:
                return self.judge_instances[name]
            cls = registry.get(name)
            shared = params_of.get(name, {}) if name in JUDGES and JUDGES.get(name) is cls else {}
            params = {**(defaults or {}), **shared, **(role or {})}
            for known_cls, known_params, instance in made:
                if known_cls is cls and known_params == params:
                    return instance
            try:
                instance = cls(**params)
            except TypeError as exc:
                raise ConfigError(f"Invalid settings for the {registry.kind} {name!r}: {exc}") from None
            made.append((cls, params, instance))
            return instance

        return make

    def run(self, ctx: BenchmarkContext) -> BenchmarkResult:
        cfg = self.config
        if ctx.model is None or ctx.tokenizer is None:
            raise ConfigError("steering needs the subject as a causal LM (ctx.model, ctx.tokenizer).")
        model, tokenizer, alignment = ctx.model, ctx.tokenizer, ctx.alignment
        concepts = self.select_concepts(ctx)
        make = self._judges()
        judges = {name: make(name, JUDGES) for name in cfg.judges}
        primary = cfg.judges[0]
        fluency_defaults = {"perplexity_factor": cfg.perplexity_factor, "min_distinct_fraction": cfg.min_distinct_fraction} if cfg.fluency_judge == "perplexity" else {}
        instruction_judge = make(cfg.instruction_judge, INSTRUCTION_JUDGES, role=cfg.instruction_judge_params)
        fluency_judge = make(cfg.fluency_judge, FLUENCY_JUDGES, fluency_defaults, cfg.fluency_judge_params)
        for judge in judges.values():
            judge.prepare(ctx, concepts)

        # Directions of the vector methods (first: a missing category fails before any generation).
        vector_methods = [m for m in cfg.methods if m in VECTOR_METHODS]
        shuffled = None
        if "control" in vector_methods:
            perm = shuffled_columns(alignment.config.d_c, ctx.seed)
            shuffled = type(alignment)(alignment.config, alignment.T[:, perm], alignment.subject_shift, alignment.subject_scale, alignment.labels)
        directions: dict[tuple[str, str], torch.Tensor] = {}
        for method in vector_methods:
            for concept in concepts:
                if method == "atlas":
                    directions[(method, concept.category)] = alignment.concept_direction(list(concept.features))
                elif method == "control":
                    directions[(method, concept.category)] = shuffled.concept_direction(list(concept.features))
                else:
                    directions[(method, concept.category)] = diffmean_direction(ctx, concept.category)

        instructions = dict(zip(SPLITS, self.instruction_splits(ctx.seed)))
        prompts = {split: [self.format(tokenizer, i) for i in instructions[split]] for split in SPLITS}
        hookpoint = alignment.config.subject.hookpoint
        absolute = cfg.strength_unit == "absolute"
        unit = 1.0 if absolute else median_token_norm(model, tokenizer, hookpoint, _without_bos(tokenizer, prompts["tuning"]))
        gen_kwargs = {"max_new_tokens": cfg.max_new_tokens, "sampling": cfg.sampling, "temperature": cfg.temperature, "seed": ctx.seed}

        def run_generate(split: str, direction: torch.Tensor | None = None, strength: float = 0.0, texts: list[str] | None = None) -> list[Generation]:
            batch = texts if texts is not None else prompts[split]
            if direction is None:
                if texts is None:  # the plain prompts: shared with every other run on this model
                    return generate_unsteered(model, tokenizer, batch, instructions=instructions[split], **gen_kwargs)
                return generate(model, tokenizer, batch, instructions=instructions[split], **gen_kwargs)
            with steer(model, hookpoint, direction, strength, absolute=absolute, unit=None if absolute else unit):
                return generate(model, tokenizer, batch, instructions=instructions[split], **gen_kwargs)

        # Unsteered generations calibrate the axis judges, on the tuning split only.
        base = {split: run_generate(split) for split in SPLITS}
        if hasattr(fluency_judge, "prepare_fluency"):
            fluency_judge.prepare_fluency(ctx, base["tuning"])
        if hasattr(instruction_judge, "prepare_instruction"):
            instruction_judge.prepare_instruction(ctx, instructions["tuning"], [g.text for g in base["tuning"]])

        def axes(split: str, gens: list[Generation]) -> tuple[list[int], list[int]]:
            return instruction_judge.rate_instruction(instructions[split], [g.text for g in gens]), fluency_judge.rate_fluency(gens)

        def rated(method: str, concept: SteeringConcept, strength: float, split: str, gens: list[Generation], axis: tuple[list[int], list[int]]) -> RatedSet:
            ratings = {name: [int(r) for r in judge.rate([g.text for g in gens], concept)] for name, judge in judges.items()}
            return RatedSet(method, concept.category, strength, split, gens, ratings, [int(r) for r in axis[0]], [int(r) for r in axis[1]])

        sets: dict[tuple[str, str, float, str], RatedSet] = {}
        base_axes = {split: axes(split, base[split]) for split in SPLITS}
        for concept in concepts:
            for split in SPLITS:
                sets[("unsteered", concept.category, 0.0, split)] = rated("unsteered", concept, 0.0, split, base[split], base_axes[split])

        # Steered generations, cached: the edge search's tuning runs are reused by the grid.
        steered: dict[tuple[str, str, float, str], tuple[list[Generation], tuple[list[int], list[int]]]] = {}

        def steered_set(method: str, concept: SteeringConcept, strength: float, split: str):
            key = (method, concept.category, strength, split)
            if key not in steered:
                gens = run_generate(split, directions[(method, concept.category)], strength)
                steered[key] = (gens, axes(split, gens))
            return steered[key]

        edge = None
        if cfg.strengths is not None:
            grid = list(cfg.strengths)
        elif vector_methods:
            probe = vector_methods[0]
            search = [cfg.edge_start * 2**k for k in range(cfg.edge_steps)]
            edge, _ = fluency_edge(search, lambda s: float(np.mean([f >= 1 for f in steered_set(probe, concepts[0], s, "tuning")[1][1]])), cfg.edge_min_fluent)
            grid = sorted({edge * f for f in cfg.grid_fractions})
        else:
            grid = []

        # A one-strength grid leaves nothing to choose: its tuning split is not steered (a third of the cost).
        steered_splits = SPLITS if len(grid) > 1 else tuple(s for s in SPLITS if s != "tuning")
        for method in vector_methods:
            for concept in concepts:
                for strength in grid:
                    for split in steered_splits:
                        gens, axis = steered_set(method, concept, strength, split)
                        sets[(method, concept.category, strength, split)] = rated(method, concept, strength, split, gens, axis)
        if "prompt" in cfg.methods:
            for concept in concepts:
                for split in SPLITS:
                    asked = [self.format(tokenizer, with_concept(i, concept.description, concept.category)) for i in instructions[split]]
                    gens = run_generate(split, texts=asked)
                    sets[("prompt", concept.category, 0.0, split)] = rated("prompt", concept, 0.0, split, gens, axes(split, gens))

        # Aggregates per (method, strength, split), pooled over concepts (equal counts per concept).
        def pooled(method: str, strength: float, split: str) -> list[RatedSet]:
            return [sets[(method, c.category, strength, split)] for c in concepts]

        def summary(method: str, strength: float, split: str) -> dict[str, float]:
            group = pooled(method, strength, split)
            return {
                "axbench": float(np.mean([x for s in group for x in s.axbench(primary)])),
                "concept": float(np.mean([x for s in group for x in s.concept_ratings[primary]])),
                "instruction": float(np.mean([x for s in group for x in s.instruction])),
                "fluency": float(np.mean([x for s in group for x in s.fluency])),
                "fluent": float(np.mean([x >= 1 for s in group for x in s.fluency])),
            }

        arms: dict[str, list[float]] = {"unsteered": [0.0]}
        for method in cfg.methods:
            if method in VECTOR_METHODS:
                arms[method] = list(grid)
            elif method == "prompt":
                arms[method] = [0.0]
        chosen: dict[str, float] = {"unsteered": 0.0, "prompt": 0.0}
        for method in vector_methods:
            if grid:  # the choice reads the tuning split only
                chosen[method] = grid[0] if len(grid) == 1 else choose_strength({s: summary(method, s, "tuning")["axbench"] for s in grid})

        metrics: dict[str, float] = {}
        controls: dict[str, float] = {}
        chance: dict[str, float] = {}
        for method in arms:
            if method not in chosen:
                continue
            target, name = (controls, "atlas") if method == "control" else (metrics, method)
            result = summary(method, chosen[method], "heldout")
            for axis in ("axbench", "concept", "instruction", "fluency"):
                target[f"{axis}_{name}"] = result[axis]
            if method in VECTOR_METHODS:
                target[f"strength_{name}"] = chosen[method]
                target[f"lambda_{name}"] = chosen[method] * unit
        if "axbench_atlas" in metrics:
            chance["axbench_atlas"] = metrics["axbench_unsteered"]  # no steering at all

        for name in judges:
            for method, target in (("atlas", metrics), ("control", controls)):
                if method not in vector_methods or not grid:
                    continue
                per_concept = []
                for c in concepts:
                    p2 = {0.0: sets[("unsteered", c.category, 0.0, "heldout")].p2(name)}
                    p2.update({s: sets[(method, c.category, s, "heldout")].p2(name) for s in grid})
                    per_concept.append(p2)
                target[f"faithfulness_{name}"] = float(np.mean([faithfulness(p) for p in per_concept]))
                target[f"p2_best_{name}"] = float(np.mean([max(v for s, v in p.items() if s != 0.0) for p in per_concept]))
                if method == "atlas":
                    chance[f"faithfulness_{name}"] = 0.0
            metrics[f"p2_unsteered_{name}"] = float(np.mean([sets[("unsteered", c.category, 0.0, "heldout")].p2(name) for c in concepts]))

        for a, b in combinations(cfg.judges, 2):
            ra = [r for s in sets.values() for r in s.concept_ratings[a]]
            rb = [r for s in sets.values() for r in s.concept_ratings[b]]
            kappa = cohen_kappa(ra, rb, weights=cfg.kappa_weights)
            if math.isfinite(kappa):
                metrics[f"kappa_{a}_{b}"] = kappa

        if edge is not None:
            metrics["fluency_edge"] = edge
        metrics["strength_unit"] = unit
        metrics["n_tuning"] = float(len(instructions["tuning"]))
        metrics["n_heldout"] = float(len(instructions["heldout"]))
        for judge in (instruction_judge, fluency_judge):
            for key, value in (judge.calibration() if hasattr(judge, "calibration") else {}).items():
                if math.isfinite(value):
                    metrics.setdefault(key, float(value))
        if any(isinstance(j, LLMJudge) for j in (*judges.values(), instruction_judge, fluency_judge)):
            metrics["llm_prompt_version"] = float(PROMPT_VERSION)

        table, details = [], []
        for method, strengths in arms.items():
            for split in SPLITS:
                for strength in strengths:
                    if any((method, c.category, strength, split) not in sets for c in concepts):
                        continue  # a one-strength grid's unsteered tuning split
                    group = pooled(method, strength, split)
                    s = summary(method, strength, split)
                    row: dict[str, Any] = {
                        "method": method, "split": split, "concept": "all", "strength": strength, "lambda": strength * unit,
                        "chosen": chosen.get(method) == strength, "axbench": s["axbench"], "concept_rating": s["concept"],
                        "instruction_rating": s["instruction"], "fluency_rating": s["fluency"], "fluent": s["fluent"],
                    }  # fmt: skip
                    for name in judges:
                        row[f"p2_{name}"] = float(np.mean([g.p2(name) for g in group]))
                    row["by_concept"] = {
                        g.concept: {"axbench": float(np.mean(g.axbench(primary))), **{f"p2_{name}": g.p2(name) for name in judges}} for g in group
                    }
                    row["example"] = group[0].generations[0].text if group[0].generations else ""
                    table.append(row)
                    for g in group:
                        scores = g.axbench(primary)
                        for i, gen in enumerate(g.generations):
                            details.append({
                                "concept": g.concept, "method": method, "strength": strength, "lambda": strength * unit, "split": split,
                                "instruction": gen.instruction, "prompt": gen.prompt, "text": gen.text, "perplexity": gen.perplexity,
                                "ratings": {name: g.concept_ratings[name][i] for name in judges}, "concept_rating": g.concept_ratings[primary][i],
                                "instruction_rating": g.instruction[i], "fluency_rating": g.fluency[i], "axbench": scores[i],
                            })  # fmt: skip

        texts = instructions["tuning"] + instructions["heldout"] + ctx.heldout_texts()
        return self._result(ctx, texts, metrics=metrics, controls=controls, chance=chance, details=details, table=table)

