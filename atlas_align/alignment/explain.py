"""Per-word explanations: which atlas concepts each unit (word) of a text expresses in the subject model.

The subject model's per-token activations at the alignment's hookpoint are pooled per unit
(:mod:`atlas_align.models.spans`: words joined wherever a token spans several of them, with the
pooling rules the alignment was fitted with: specials, the attention sink and norm outliers
masked), translated to the atlas with ``T`` exactly like a sequence-pooled vector, and each unit's
top concepts are reported: atlas features grouped by label (the built-in atlas has several
features per WordNet category), a concept's score being its features' mean translated score.
:meth:`Explanation.to_html` renders a self-contained page: the text with per-word highlighting for
one chosen concept (a selector switches concepts), and each word's top concepts on hover.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch

from atlas_align.errors import ConfigError
from atlas_align.models.activations import Hookpoint
from atlas_align.models.spans import Reduce, token_activations, unit_activations

if TYPE_CHECKING:
    from atlas_align.alignment.model import AtlasAlignment

Features = Literal["validated", "labelled", "all"]


@dataclass
class Concept:
    """A labelled concept: the atlas features sharing one label; its score is their mean translated score."""

    label: str
    features: list[int]
    score: float = 0.0

    @property
    def feature(self) -> int:
        return self.features[0]


@dataclass
class UnitExplanation:
    """One unit (word) of the text: its character span and its top atlas concepts."""

    text: str
    start: int
    end: int
    concepts: list[Concept]


@dataclass
class Explanation:
    """Per-unit atlas concepts for one text.

    ``scores`` (n_units, d_c) holds every feature's translated estimate; ``concepts`` the ranked
    concepts (features grouped by label) and ``concept_matrix`` (n_units, n_concepts) their scores.
    """

    text: str
    units: list[UnitExplanation]
    scores: torch.Tensor
    concepts: list[Concept]
    concept_matrix: torch.Tensor = field(repr=False)

    def concept_index(self, key: int | str) -> int:
        """The concept holding atlas feature ``key`` (an int), or labelled exactly / containing ``key`` (a str)."""
        if isinstance(key, int):
            for i, c in enumerate(self.concepts):
                if key in c.features:
                    return i
            raise ConfigError(f"Atlas feature {key} is not among the ranked concepts (try features='all').")
        lowered = key.lower()
        for match in (lambda c: c.label.lower() == lowered, lambda c: lowered in c.label.lower()):
            for i, c in enumerate(self.concepts):
                if match(c):
                    return i
        raise ConfigError(f"No ranked concept is labelled {key!r}.")

    def top_concept(self) -> int:
        """The concept with the highest score on any unit (the HTML view's default)."""
        if self.concept_matrix.numel() == 0:
            return 0
        return int(self.concept_matrix.max(dim=0).values.argmax())

    def concept_scores(self, index: int) -> list[float]:
        """Per-unit scores of concept ``index``."""
        return [float(v) for v in self.concept_matrix[:, index]]

    def table(self, top_k: int | None = None, width: int = 40) -> str:
        """A compact text table: one row per unit, its top concepts with scores."""
        lines = [f"{'unit':<16} top atlas concepts (score)"]
        for u in self.units:
            concepts = u.concepts[:top_k] if top_k else u.concepts
            cells = "; ".join(f"{_short(c.label, width)} {c.score:.2f}" for c in concepts)
            lines.append(f"{_short(u.text, 16):<16} {cells}")
        return "\n".join(lines)

    def to_html(self, concept: int | str | None = None, title: str = "atlas-align explain") -> str:
        """The HTML view; ``concept``: an atlas feature id or a label (default: :meth:`top_concept`)."""
        return render_html(self, None if concept is None else self.concept_index(concept), title)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def ranked_concepts(alignment: AtlasAlignment, features: Features = "validated") -> list[Concept]:
    """Concepts an explanation ranks: validated labels (else all labelled features, else all features), grouped by label."""
    labels, d_c = alignment.labels, alignment.config.d_c
    if features == "validated" and labels.validated():
        items = [(x.feature, x.label) for x in labels.validated()]
    elif features in ("validated", "labelled") and len(labels):
        items = [(x.feature, x.label) for x in labels]
    else:
        named = {x.feature: x.label for x in labels}
        items = [(f, named.get(f) or f"feature {f}") for f in range(d_c)]
    groups: dict[str, list[int]] = {}
    for feature, label in sorted(items):
        if 0 <= feature < d_c:
            groups.setdefault(label, []).append(feature)
    return [Concept(label=label, features=feats) for label, feats in groups.items()]


def explain_text(
    alignment: AtlasAlignment,
    model,
    tokenizer,
    text: str,
    *,
    top_k: int = 5,
    reduce: Reduce = "max",
    features: Features = "validated",
    max_length: int = 128,
) -> Explanation:
    """Per-unit top atlas concepts of ``text`` for the subject ``model`` (see the module docstring)."""
    if top_k < 1:
        raise ConfigError("top_k must be at least 1.")
    hook = Hookpoint(path=alignment.config.subject.hookpoint, layer=alignment.config.subject.layer, site=alignment.config.subject.site)
    (acts,) = token_activations(model, tokenizer, hook, [text], max_length=max_length, pooling=alignment.config.pooling)
    units, (pooled,) = unit_activations([acts], reduce)
    scores = alignment.translate_to_atlas(pooled) if len(units) else torch.zeros(0, alignment.config.d_c)
    concepts = ranked_concepts(alignment, features)
    matrix = torch.stack([scores[:, c.features].mean(dim=1) for c in concepts], dim=1) if concepts else torch.zeros(len(units), 0)
    out = []
    for (start, end), row in zip(units.units, matrix):
        values, order = row.topk(min(top_k, len(concepts)))
        top = [Concept(label=concepts[int(i)].label, features=concepts[int(i)].features, score=float(v)) for v, i in zip(values, order)]
        out.append(UnitExplanation(text=text[start:end], start=start, end=end, concepts=top))
    return Explanation(text=text, units=out, scores=scores, concepts=concepts, concept_matrix=matrix)


# ------------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;max-width:60rem;color:#1b1f24}
h1{font-size:1.2rem}#text{font-size:1.35rem;line-height:2.4;white-space:pre-wrap;border:1px solid #d0d7de;border-radius:8px;padding:1rem 1.2rem}
.u{position:relative;border-radius:4px;padding:.1em .15em;cursor:default}
.u .tip{display:none;position:absolute;left:0;top:2.1em;z-index:2;background:#1b1f24;color:#fff;font-size:.8rem;line-height:1.4;
white-space:nowrap;padding:.4em .6em;border-radius:6px;box-shadow:0 2px 8px rgba(0,0,0,.3)}
.u:hover .tip,.u.show .tip{display:block}.tip b{color:#ffd866}
.controls{margin:1rem 0}.legend{font-size:.85rem;color:#57606a;margin-top:.6rem}
table{border-collapse:collapse;font-size:.85rem;margin-top:1.2rem}td,th{border-bottom:1px solid #eaeef2;padding:.25em .6em;text-align:left}
"""

_JS = """
const data = JSON.parse(document.getElementById('explain-data').textContent);
function paint(f){
  const s = data.scores[f] || [], mx = Math.max(1e-9, ...s.map(v => Math.max(0, v)));
  document.querySelectorAll('#text .u').forEach(el => {
    const v = s[+el.dataset.i] || 0, a = Math.max(0, v) / mx;
    el.style.background = 'rgba(255,140,0,' + (0.85 * a).toFixed(3) + ')';
    el.dataset.score = v.toFixed(3);
  });
  document.getElementById('legend').textContent = 'Highlight: ' + data.names[f] + ' (max ' + mx.toFixed(2) + ')';
}
const sel = document.getElementById('concept');
sel.addEventListener('change', () => paint(sel.value));
paint(sel.value);
"""


def render_html(explanation: Explanation, concept: int | None = None, title: str = "atlas-align explain") -> str:
    """A self-contained HTML page (inline CSS/JS, no network): the text with per-word highlighting.

    ``concept`` is an index into ``explanation.concepts`` (default: the top concept).
    """
    ex = explanation
    # The selector offers every concept that is in some unit's top list, plus the chosen one.
    position = {c.label: i for i, c in enumerate(ex.concepts)}
    offered: list[int] = []
    for u in ex.units:
        for c in u.concepts:
            if position[c.label] not in offered:
                offered.append(position[c.label])
    chosen = ex.top_concept() if concept is None else int(concept)
    if chosen not in offered:
        offered.insert(0, chosen)
    best = {i: max(ex.concept_scores(i), default=0.0) for i in offered}
    offered.sort(key=lambda i: (i != chosen, -best[i]))
    name = lambda i: ex.concepts[i].label if i < len(ex.concepts) else f"concept {i}"  # noqa: E731
    data = {
        "scores": {str(i): [round(v, 4) for v in ex.concept_scores(i)] for i in offered if i < len(ex.concepts)},
        "names": {str(i): name(i) for i in offered},
    }
    parts, pos = [], 0
    for i, u in enumerate(ex.units):
        parts.append(html.escape(ex.text[pos : u.start]))
        tip = "<br>".join(f"<b>{c.score:.2f}</b> {html.escape(c.label)}" for c in u.concepts)
        plain = "; ".join(f"{c.label} {c.score:.2f}" for c in u.concepts)
        parts.append(
            f'<span class="u" data-i="{i}" title="{html.escape(plain, quote=True)}">{html.escape(u.text)}<span class="tip">{tip}</span></span>'
        )
        pos = u.end
    parts.append(html.escape(ex.text[pos:]))
    options = "".join(f'<option value="{i}"{" selected" if i == chosen else ""}>{html.escape(name(i))}</option>' for i in offered)
    rows = "".join(
        f"<tr><td>{html.escape(u.text)}</td><td>{html.escape('; '.join(f'{c.label} ({c.score:.2f})' for c in u.concepts[:3]))}</td></tr>" for u in ex.units
    )
    payload = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # inert inside <script>
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>'
        f"<h1>{html.escape(title)}</h1>"
        f'<div class="controls"><label>Concept: <select id="concept">{options}</select></label>'
        f'<div class="legend" id="legend"></div></div>'
        f'<div id="text">{"".join(parts)}</div>'
        f"<table><thead><tr><th>unit</th><th>top concepts</th></tr></thead><tbody>{rows}</tbody></table>"
        f'<script id="explain-data" type="application/json">{payload}</script><script>{_JS}</script></body></html>'
    )


__all__ = ["Concept", "Explanation", "UnitExplanation", "explain_text", "ranked_concepts", "render_html"]
