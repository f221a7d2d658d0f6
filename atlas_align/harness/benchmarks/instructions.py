"""Instruction prompts for ``steering@3``: a fixed, neutral set, its seeded split, and how a subject sees them.

The 24 built-in instructions are short, everyday requests written for this benchmark; none asks for
any WordNet category the benchmark steers toward (animals, food, plants, the body, artifacts), so
whatever concept appears in a response is the steering's doing. :func:`split_instructions` halves
them with the seed into a *tuning* split (λ is chosen there) and a *held-out* split (reported).

A subject whose tokenizer has a chat template gets each instruction as one user turn with the
generation prompt added (``apply_chat_template(..., add_generation_prompt=True)``); any other
subject gets plain text, ``"Instruction: {instruction}\\nResponse:"`` by default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from atlas_align.errors import ConfigError

INSTRUCTIONS: tuple[str, ...] = (
    "Write a short note to a friend about your weekend.",
    "Describe your ideal morning.",
    "Explain why people enjoy stories.",
    "Give some advice to someone starting a new job.",
    "Write a few sentences about a place you would like to visit.",
    "Tell me about a memorable day.",
    "Describe what makes a good teacher.",
    "Write a short thank-you message to a neighbour.",
    "Explain how you would plan a relaxing holiday.",
    "Share some tips for staying focused while studying.",
    "Write the opening of a story about a long journey.",
    "Describe the weather on a perfect day.",
    "Tell me what you would do with a free afternoon.",
    "Write a short speech to welcome new students.",
    "Explain why friendship matters.",
    "Describe a quiet evening at home.",
    "Give three reasons to learn a new language.",
    "Write a short review of a day out.",
    "Tell me about something you learned recently.",
    "Describe how you feel at the end of a long week.",
    "Write a short message to cheer up a friend.",
    "Explain what makes a town a nice place to live.",
    "Describe a hobby you would like to try.",
    "Write a few lines about the start of a new year.",
)

PLAIN_TEMPLATE = "Instruction: {instruction}\nResponse:"
CONCEPT_SUFFIX = " Talk about {concept}."

_CATEGORY_TAG = re.compile(r"\s*\((?:noun|verb|adj|adv)\.[A-Za-z0-9_]+\)")


def split_instructions(instructions: Sequence[str], seed: int, tuning_fraction: float = 0.5) -> tuple[list[str], list[str]]:
    """A seeded split into (tuning, held-out), each keeping the original order; both non-empty."""
    n = len(instructions)
    if n < 2:
        raise ConfigError(f"steering needs at least 2 instructions to split into tuning and held-out halves; got {n}.")
    n_tuning = min(n - 1, max(1, round(n * tuning_fraction)))
    order = np.random.default_rng(seed).permutation(n)
    tuning = set(order[:n_tuning].tolist())
    return [t for i, t in enumerate(instructions) if i in tuning], [t for i, t in enumerate(instructions) if i not in tuning]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_text(tokenizer, content: str) -> str:
    """``content`` as one user turn, ready for the assistant's answer (the template's generation prompt)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)


def format_prompt(tokenizer, instruction: str, *, chat_template: bool = True, template: str = PLAIN_TEMPLATE) -> str:
    """What the subject is given: its chat template when it has one (and ``chat_template``), else ``template``."""
    if chat_template and has_chat_template(tokenizer):
        return chat_text(tokenizer, instruction)
    return template.format(instruction=instruction)


def starts_with_bos(tokenizer, texts: Sequence[str]) -> bool:
    """Whether every text already begins with the BOS token (a chat template put it there), so tokenising
    must not add another one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and bool(texts) and all(t.startswith(bos) for t in texts)


def concept_phrase(description: str, category: str) -> str:
    """'animals (noun.animal)' → 'animals'; a bare category 'noun.animal' → 'animal'."""
    phrase = _CATEGORY_TAG.sub("", description).strip()
    if not phrase or phrase == category:
        phrase = category.split(".", 1)[-1].replace("_", " ")
    return phrase


def with_concept(instruction: str, description: str, category: str = "") -> str:
    """The ``prompt`` baseline: the instruction with ' Talk about <concept>.' appended."""
    return instruction.rstrip() + CONCEPT_SUFFIX.format(concept=concept_phrase(description, category))
