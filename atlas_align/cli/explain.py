"""`atlas-align explain`: per-word atlas concepts of a text, as a table and an HTML view."""

from __future__ import annotations

import click

from atlas_align.cli.main import friendly_errors, json_option, revision_option


@click.command()
@click.argument("artifact")
@click.argument("text")
@click.option("--top-k", type=int, default=5, show_default=True, help="Concepts per word.")
@click.option("--pooling", "reduce", type=click.Choice(["max", "mean"]), default="max", show_default=True, help="How a word's tokens are pooled.")
@click.option("--features", type=click.Choice(["validated", "labelled", "all"]), default="validated", show_default=True,
              help="Which atlas features are ranked (validated labels; falls back to labelled, then all).")  # fmt: skip
@click.option("--subject", default=None, help="Subject model (default: the model id the alignment records).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Also write a self-contained HTML view here.")
@click.option("--concept", default=None, help="Concept highlighted in the HTML view: a feature id or a label query (default: the strongest one).")
@click.option("--max-length", type=int, default=128, show_default=True, help="Tokens read from the text.")
@json_option
@revision_option
@friendly_errors
def explain(artifact, text, top_k, reduce, features, subject, html_path, concept, max_length, as_json, revision):
    """Which atlas concepts each word of TEXT expresses in the subject model.

    \b
    Example:
      atlas-align explain runs/smollm2-l20 "The old dog chased a cat across the garden" --html explain.html
    """
    import json
    from pathlib import Path

    from atlas_align.alignment.explain import render_html
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.errors import ConfigError
    from atlas_align.models.loading import load_subject

    alignment = AtlasAlignment.from_pretrained(artifact, revision=revision)
    model, tokenizer, _ = load_subject(subject or alignment.config.subject.model_id)
    ex = alignment.explain(model, tokenizer, text, top_k=top_k, reduce=reduce, features=features, max_length=max_length)
    chosen = None
    if concept is not None:
        key: int | str = int(concept) if concept.strip().isdigit() else concept
        if isinstance(key, int) and not 0 <= key < alignment.config.d_c:
            raise ConfigError(f"Atlas feature {key} is out of range (the atlas has {alignment.config.d_c} features).")
        try:
            chosen = ex.concept_index(key)
        except ConfigError:
            hits = alignment.labels.search(concept, top_k=1) if isinstance(key, str) else []
            if not hits:
                raise ConfigError(f"No ranked concept matches {concept!r}; `atlas-align atlas search` lists labels (or pass --features all).") from None
            chosen = ex.concept_index(hits[0][0].feature)
    if as_json:
        rows = [{"unit": u.text, "start": u.start, "end": u.end, "concepts": [vars(c) for c in u.concepts]} for u in ex.units]
        click.echo(json.dumps({"text": text, "units": rows}, indent=2, ensure_ascii=False))
    else:
        click.echo(ex.table() if ex.units else "(no words to explain)")
    if html_path:
        path = Path(html_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(ex, chosen, title=f"{alignment.config.subject.model_id} @ {alignment.config.subject.hookpoint} → {alignment.config.atlas.atlas_id}"), encoding="utf-8")
        click.echo(f"Wrote {path}", err=as_json)
