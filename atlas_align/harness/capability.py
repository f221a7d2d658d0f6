"""The capability cost of steering: how much a general task degrades when the model is steered.

The task is a small multiple-choice lm-eval task built from the packaged WordNet corpus,
**WordNet gloss → word**: each item shows a definition and asks for the word::

    Definition: a domesticated carnivorous mammal that typically has a long snout ...
    Word:  dog | lathe | sermon | tundra

The gold word is the synset's first lemma; the three distractors are lemmas of other synsets
with the same part of speech (never a synonym of the gold word in any sense), drawn with a fixed
seed. Only lemmas that are one lowercase word of 3+ letters are used, and only glosses that do not
contain the lemma or its stem. :func:`build_capability_task` renders the task as an ordinary lm-eval
YAML task (``dataset_path: json``) plus its jsonl data file into a folder, so it also runs from
lm-eval's command line offline::

    python -m atlas_align.harness.lm_eval run --model atlas-steered --model_args ... \\
        --tasks atlas_wordnet_gloss --include_path FOLDER

:func:`capability_cost` evaluates the task twice on the same items and the same loaded model —
unsteered (lm-eval's ``HFLM``) and steered toward an atlas concept exactly as the ``atlas-steered``
model type steers (``AtlasAlignment.steer`` around every forward, one relative-strength unit per
run measured on ``REFERENCE_PROMPTS``) — and returns a :class:`CapabilityCost`, whose ``drop`` is
accuracy unsteered − steered. :func:`capability_cost_for_vector` does the same for any
subject-space direction (e.g. a DiffMean baseline).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.errors import ConfigError, ShapeMismatchError
from atlas_align.files import atomic_write_text

TASK_NAME = "atlas_wordnet_gloss"
TASK_VERSION = 1  # bump when the item generation changes: it names the cache folder
TEMPLATE = "wordnet_gloss.yaml.in"
DEFAULT_N_ITEMS = 200
N_CHOICES = 4

_CLEAN = re.compile(r"^[a-z]{3,}$")
_WORDS = re.compile(r"[a-z]+")
_POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}  # satellite adjectives are adjectives
_MAX_DEFINITION_CHARS = 200


# ------------------------------------------------------------------------------------------ items

def _stem(word: str) -> str:
    return word[: max(4, len(word) - 3)]


def _stem_leaks(word: str, text: str) -> bool:
    """Whether ``text`` gives ``word`` away: contains it, a word with its stem ('incredulously' /
    'incredulous'), or a word of 5+ letters whose stem is inside it ('undo the braids' / 'unbraid')."""
    word, text = word.lower(), text.lower()
    if word in text:
        return True
    tokens = _WORDS.findall(text)
    return any(token.startswith(_stem(word)) or (len(token) >= 5 and _stem(token) in word) for token in tokens)


def gloss_word_items(n_items: int = DEFAULT_N_ITEMS, seed: int = 0, rows: Sequence[dict] | None = None) -> list[dict]:
    """The task's items: ``{"definition", "choices" (4 words), "label" (gold index), "lemma", "pos", "synset", "category"}``.

    Deterministic for a given ``seed`` and corpus; ``rows`` defaults to the packaged WordNet corpus.
    """
    if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 1:
        raise ConfigError(f"n_items must be a positive integer, got {n_items!r}.")
    if rows is None:
        from atlas_align.corpus.builtin import load_default_corpus

        rows = load_default_corpus()

    senses: dict[str, set[str]] = {}  # word → every synset it names, so no distractor is a synonym in any sense
    pool: dict[str, set[str]] = {}  # part of speech → clean lemmas
    candidates: list[tuple[dict, str, str]] = []
    for row in rows:
        if row.get("kind") != "gloss":
            continue
        head, sep, definition = row["text"].partition(": ")
        pos = _POS.get(str(row.get("synset", "")).rsplit("-", 1)[-1])
        if not sep or pos is None:
            continue
        for word in head.split(","):
            senses.setdefault(word.strip().lower(), set()).add(row["synset"])
        lemma = row["lemma"]
        if not _CLEAN.match(lemma):
            continue
        pool.setdefault(pos, set()).add(lemma)
        definition = definition.strip()
        if 10 <= len(definition) <= _MAX_DEFINITION_CHARS and not _stem_leaks(lemma, definition):
            candidates.append((row, definition, pos))

    rng = random.Random(seed)
    rng.shuffle(candidates)
    by_pos = {pos: sorted(words) for pos, words in pool.items()}
    items: list[dict] = []
    used: set[str] = set()
    for row, definition, pos in candidates:
        lemma = row["lemma"]
        if lemma in used or len(by_pos[pos]) < 2 * N_CHOICES:
            continue
        distractors: list[str] = []
        for _ in range(1000):  # a handful of draws almost always suffice
            if len(distractors) == N_CHOICES - 1:
                break
            word = rng.choice(by_pos[pos])
            if word == lemma or word in distractors or senses.get(word, set()) & senses[lemma] or _stem_leaks(word, definition) or _stem_leaks(word, lemma) or _stem_leaks(lemma, word):
                continue
            distractors.append(word)
        if len(distractors) < N_CHOICES - 1:
            continue
        label = rng.randrange(N_CHOICES)
        choices = [*distractors[:label], lemma, *distractors[label:]]
        items.append({"definition": definition, "choices": choices, "label": label, "lemma": lemma, "pos": pos, "synset": row["synset"], "category": row.get("category")})
        used.add(lemma)
        if len(items) == n_items:
            return items
    raise ConfigError(f"The corpus yields only {len(items)} gloss → word items; ask for n_items <= {len(items)}.")


# ------------------------------------------------------------------------------------- lm-eval task

class CapabilityTask(BaseModel):
    """A rendered lm-eval task folder: pass ``folder`` as ``--include_path`` and ``task`` as ``--tasks``."""

    model_config = ConfigDict(frozen=True)

    folder: Path
    task: str = TASK_NAME
    data_file: Path
    n_items: int
    seed: int

    def task_manager(self):
        """An lm-eval ``TaskManager`` that knows this task only (no lm-eval built-ins are indexed)."""
        from lm_eval.tasks import TaskManager

        return TaskManager(include_path=str(self.folder), include_defaults=False)


def default_task_folder(n_items: int = DEFAULT_N_ITEMS, seed: int = 0) -> Path:
    """``$ATLAS_ALIGN_CACHE/lm_eval_tasks/wordnet_gloss-v<V>-n<N>-s<seed>`` (default cache ``~/.cache/atlas-align``)."""
    root = Path(os.environ.get("ATLAS_ALIGN_CACHE") or Path.home() / ".cache" / "atlas-align").expanduser()
    return root / "lm_eval_tasks" / f"wordnet_gloss-v{TASK_VERSION}-n{n_items}-s{seed}"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def build_capability_task(folder: str | Path | None = None, *, n_items: int = DEFAULT_N_ITEMS, seed: int = 0) -> CapabilityTask:
    """Write the gloss → word task (``<task>.yaml`` + ``<task>.jsonl``) into ``folder`` and describe it.

    ``folder`` defaults to :func:`default_task_folder`. The items are regenerated from the packaged
    corpus each call (deterministic); files are rewritten only when their content changed, so
    ``datasets``' cache of the json file stays valid.
    """
    items = gloss_word_items(n_items, seed)
    folder = Path(folder).expanduser().resolve() if folder is not None else default_task_folder(n_items, seed)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{TASK_NAME}.jsonl"
    _write_if_changed(data_file, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    template = (resources.files("atlas_align.harness") / "tasks" / TEMPLATE).read_text(encoding="utf-8")
    # json.dumps quotes the path as a YAML double-quoted scalar (spaces, colons and backslashes survive).
    yaml_text = template.replace("{TASK}", TASK_NAME).replace("{DATA}", json.dumps(str(data_file)))
    _write_if_changed(folder / f"{TASK_NAME}.yaml", yaml_text)
    return CapabilityTask(folder=folder, data_file=data_file, n_items=n_items, seed=seed)


# --------------------------------------------------------------------------------------- the cost

class CapabilityCost(BaseModel):
    """Accuracy on the gloss → word task without and with steering, on the same items.

    ``drop`` = ``acc_unsteered`` − ``acc_steered`` (positive: steering costs capability);
    ``drop_stderr`` is the paired standard error over items. ``coefficient`` is λ, the norm of the
    added vector (strength × unit, or strength when ``absolute``). ``lost`` / ``gained`` count items
    that steering turned wrong / right. Log-likelihoods are summed over the answer's tokens.
    """

    task: str
    n_items: int
    concept: str
    hookpoint: str
    strength: float
    absolute: bool
    coefficient: float = Field(description="λ, the norm of the added steering vector")
    acc_unsteered: float
    acc_steered: float
    drop: float
    drop_stderr: float
    acc_norm_unsteered: float
    acc_norm_steered: float
    lost: int
    gained: int
    gold_loglik_unsteered: float = Field(description="mean log-likelihood of the correct word, unsteered")
    gold_loglik_steered: float = Field(description="mean log-likelihood of the correct word, steered")
    mean_abs_loglik_change: float = Field(description="mean |Δ log-likelihood| over every item's choices")


def _check_limit(limit: int | None, n_items: int) -> int:
    if limit is None:
        return n_items
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"limit must be a positive number of items (or None for all {n_items}), got {limit!r}.")
    if limit > n_items:
        raise ConfigError(f"limit={limit} exceeds the task's {n_items} items; raise n_items.")
    return limit


def _check_strength(strength: float) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ConfigError(f"strength must be a number, got {strength!r}.") from None
    if not math.isfinite(value):
        raise ConfigError(f"strength must be finite, got {strength!r}.")
    return value


def _steerable_lm(model, tokenizer, batch_size: int):
    """lm-eval's HFLM over an already-loaded model, with an optional steering context around every forward."""
    from lm_eval.models.huggingface import HFLM

    class _SteerableLM(HFLM):
        steering: Callable[[], AbstractContextManager] | None = None

        def _model_call(self, inps, attn_mask=None, labels=None):
            if self.steering is None:
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            with self.steering():
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            if self.steering is None:
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
            with self.steering():
                return super()._model_generate(context, max_length, stop, **generation_kwargs)

    return _SteerableLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def evaluate_task(lm, task: CapabilityTask, limit: int) -> dict[str, Any]:
    """One lm-eval run of ``task`` on its first ``limit`` items: acc, acc_norm, per-item correctness and log-likelihoods."""
    import lm_eval

    out = lm_eval.simple_evaluate(
        model=lm, tasks=[task.task], task_manager=task.task_manager(), limit=limit, bootstrap_iters=0,
        log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
    )
    samples = sorted(out["samples"][task.task], key=lambda s: s["doc_id"])
    metrics = out["results"][task.task]
    return {
        "acc": float(metrics["acc,none"]),
        "acc_norm": float(metrics["acc_norm,none"]),
        "correct": [float(s["acc"]) for s in samples],
        "logliks": [[float(r[0]) for r in s["filtered_resps"]] for s in samples],
        "gold": [int(s["target"]) for s in samples],
    }


def _compare(lm, task: CapabilityTask, limit: int, steering: Callable[[], AbstractContextManager], **fields: Any) -> CapabilityCost:
    lm.steering = None
    plain = evaluate_task(lm, task, limit)
    lm.steering = steering
    try:
        steered = evaluate_task(lm, task, limit)
    finally:
        lm.steering = None
    n = len(plain["correct"])
    diffs = [a - b for a, b in zip(plain["correct"], steered["correct"], strict=True)]
    mean = sum(diffs) / n
    stderr = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
    changes = [abs(a - b) for pa, sa in zip(plain["logliks"], steered["logliks"], strict=True) for a, b in zip(pa, sa, strict=True)]
    return CapabilityCost(
        task=task.task, n_items=n,
        acc_unsteered=plain["acc"], acc_steered=steered["acc"], drop=plain["acc"] - steered["acc"], drop_stderr=stderr,
        acc_norm_unsteered=plain["acc_norm"], acc_norm_steered=steered["acc_norm"],
        lost=sum(d > 0 for d in diffs), gained=sum(d < 0 for d in diffs),
        gold_loglik_unsteered=sum(ll[g] for ll, g in zip(plain["logliks"], plain["gold"], strict=True)) / n,
        gold_loglik_steered=sum(ll[g] for ll, g in zip(steered["logliks"], steered["gold"], strict=True)) / n,
        mean_abs_loglik_change=sum(changes) / len(changes),
        **fields,
    )


def _load(subject, default: str):
    """(model, tokenizer) from a loaded pair, a known name ('smollm2'), a folder or a Hub id."""
    if isinstance(subject, tuple | list):
        if len(subject) != 2:
            raise ConfigError("subject must be a (model, tokenizer) pair, a model name or a folder.")
        return subject[0], subject[1]
    from atlas_align.models.loading import load_subject

    model, tokenizer, _ = load_subject(str(subject or default))
    return model, tokenizer


def capability_cost(
    alignment, subject, concept: str | int | list[int], strength: float, *,
    limit: int | None = None, n_items: int = DEFAULT_N_ITEMS, seed: int = 0, unit: float | None = None,
    absolute: bool = False, batch_size: int = 8, task_folder: str | Path | None = None,
) -> CapabilityCost:
    """Gloss → word accuracy without and with steering toward ``concept``, on the same items and model.

    ``alignment``: an :class:`~atlas_align.AtlasAlignment` or its folder / repo id. ``subject``: a
    loaded ``(model, tokenizer)`` pair (used as is, not reloaded), a model name or folder for
    ``load_subject``, or None for the model the alignment records. ``concept`` and ``strength`` mean
    what they mean for the ``atlas-steered`` lm-eval model (feature ids, a category such as
    'noun.animal' or a label query; strength relative to the median token norm at the hookpoint,
    measured on ``REFERENCE_PROMPTS`` unless ``unit`` is given; ``absolute=True``: λ = strength).
    ``limit``: the first ``limit`` of the task's ``n_items`` items (None: all).
    """
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.harness.lm_eval import resolve_concept, steering_unit

    strength = _check_strength(strength)
    limit = _check_limit(limit, n_items)
    if not isinstance(alignment, AtlasAlignment):
        alignment = AtlasAlignment.from_pretrained(alignment)
    resolved = resolve_concept(alignment, concept)
    alignment.concept_direction(resolved)  # a bad concept fails before any model is loaded
    task = build_capability_task(task_folder, n_items=n_items, seed=seed)
    model, tokenizer = _load(subject, alignment.config.subject.model_id)
    if not absolute and unit is None:
        unit = steering_unit(alignment, model, tokenizer)
    lm = _steerable_lm(model, tokenizer, batch_size)
    return _compare(
        lm, task, limit, lambda: alignment.steer(model, resolved, strength=strength, absolute=absolute, unit=unit),
        concept=str(concept), hookpoint=alignment.config.subject.hookpoint, strength=strength, absolute=absolute,
        coefficient=strength if absolute else strength * float(unit),
    )


def capability_cost_for_vector(
    model, tokenizer, hookpoint: str, vector: torch.Tensor, strength: float, *,
    limit: int | None = None, n_items: int = DEFAULT_N_ITEMS, seed: int = 0, unit: float | None = None,
    absolute: bool = False, batch_size: int = 8, task_folder: str | Path | None = None, name: str = "vector",
) -> CapabilityCost:
    """:func:`capability_cost` for any subject-space direction (e.g. DiffMean), steered with :func:`~atlas_align.models.steering.steer`.

    ``vector`` is normalised to a unit direction; its size is set by ``strength`` alone (relative
    to the median token norm at ``hookpoint`` on ``REFERENCE_PROMPTS`` unless ``unit`` is given, or
    λ = strength when ``absolute``), as for atlas concepts, so the two are compared at equal λ.
    """
    from atlas_align.models.steering import REFERENCE_PROMPTS, median_token_norm, steer

    strength = _check_strength(strength)
    limit = _check_limit(limit, n_items)
    vector = torch.as_tensor(vector).detach().float().flatten()
    width = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None)
    if width is not None and vector.numel() != width:
        raise ShapeMismatchError(f"The steering vector has {vector.numel()} dims but the model's hidden size is {width}.")
    if not torch.isfinite(vector).all() or float(vector.norm()) == 0.0:
        raise ConfigError("The steering vector must be finite and non-zero.")
    direction = vector / vector.norm()
    task = build_capability_task(task_folder, n_items=n_items, seed=seed)
    if not absolute and unit is None:
        unit = median_token_norm(model, tokenizer, hookpoint, REFERENCE_PROMPTS)
    lm = _steerable_lm(model, tokenizer, batch_size)
    return _compare(
        lm, task, limit, lambda: steer(model, hookpoint, direction, strength, absolute=absolute, unit=unit),
        concept=name, hookpoint=hookpoint, strength=strength, absolute=absolute,
        coefficient=strength if absolute else strength * float(unit),
    )
