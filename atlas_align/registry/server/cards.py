"""Card metadata (the YAML block at the top of a README) read safely from untrusted text.

Anyone may send a card to ``/api/validate-yaml`` and any writer may commit one, so parsing must be
bounded: the block is found by scanning lines (no regular expression that can backtrack), it is
capped in size, and YAML aliases are refused (a few hundred bytes of nested aliases expand to
gigabytes, the "billion laughs"). Same spirit as ``huggingface_hub``'s own safe card loader.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from atlas_align.errors import ConfigError

__all__ = ["MAX_CARD_METADATA_BYTES", "derive_tags", "parse_card_data"]

# Real cards hold a few KB of metadata; the Hub's own limit is in the same range.
MAX_CARD_METADATA_BYTES = 64 * 1024
_MAX_NESTING = 50


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors/aliases and deep nesting instead of expanding them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"YAML aliases ('*{event.anchor}') are not allowed in card metadata (line "
                f"{event.start_mark.line + 1}); write the value out."
            )
        depth = getattr(self, "_atlas_depth", 0)
        if depth > _MAX_NESTING:
            raise ConfigError(f"Card metadata is nested more than {_MAX_NESTING} levels deep.")
        self._atlas_depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._atlas_depth = depth


def _front_matter(text: str) -> str | None:
    """The text between a leading ``---`` line and the next ``---`` line, or None.

    Linear in the input: it looks at each line once. Leading blank lines are allowed, as the
    Hub's parser allows leading whitespace.
    """
    lines = iter(text.splitlines(keepends=True))
    for line in lines:
        if line.strip() == "":
            continue
        if line.rstrip("\r\n").strip() != "---":
            return None
        break
    else:
        return None
    body: list[str] = []
    size = 0
    for line in lines:
        if line.rstrip("\r\n") == "---":
            return "".join(body)
        size += len(line)
        if size > MAX_CARD_METADATA_BYTES:
            raise ConfigError(
                f"The README metadata block is larger than {MAX_CARD_METADATA_BYTES // 1024} KiB; keep the "
                "YAML header short and put long text in the body."
            )
        body.append(line)
    return None


def parse_card_data(text: str) -> dict[str, Any] | None:
    """The YAML block at the top of a README, as the Hub exposes it in ``cardData``.

    Raises :class:`ConfigError` for metadata that is not a mapping, too large, too deep, uses
    aliases, or is not valid YAML.
    """
    block = _front_matter(text)
    if block is None:
        return None
    try:
        data = yaml.load(block, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid YAML metadata in README.md: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError("Card metadata is nested too deeply.") from exc
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError("The README metadata block must be a YAML mapping (key: value lines).")
    # Dates and other YAML scalars must survive JSON encoding.
    try:
        return json.loads(json.dumps(data, default=str))
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"Card metadata cannot be represented as JSON: {exc}") from exc


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if item is not None and not isinstance(item, (dict, list))]
    if isinstance(value, dict):
        return []
    return [str(value)]


def derive_tags(card: dict[str, Any] | None) -> list[str]:
    """Tags the Hub derives from a card, so ``list_models(filter=...)`` finds the same repos here."""
    if not card:
        return []
    tags: list[str] = []
    tags += _as_list(card.get("tags"))
    tags += _as_list(card.get("library_name"))
    tags += _as_list(card.get("pipeline_tag"))
    tags += _as_list(card.get("language"))
    tags += [f"license:{item}" for item in _as_list(card.get("license"))]
    tags += [f"dataset:{item}" for item in _as_list(card.get("datasets"))]
    relation = card.get("base_model_relation")
    for base in _as_list(card.get("base_model")):
        tags.append(f"base_model:{base}")
        if relation and isinstance(relation, str):
            tags.append(f"base_model:{relation}:{base}")
    return list(dict.fromkeys(tags))
