"""`atlas-align atlas build / show / search`: Concept Atlases (a model + a sae-lens SAE + feature labels)."""

from __future__ import annotations

import json

import click

from atlas_align.cli.main import FieldDefault, friendly_errors, json_option


@click.group()
def atlas() -> None:
    """Build, inspect and search Concept Atlases (a model + a sae-lens SAE + feature labels)."""


@atlas.command("build")
@click.option("--model", default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "model"), show_default=True, help="Foundation model: offline alias (minilm, mpnet, ...), local folder or Hub id.")
@click.option("--layer", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "layer"), show_default=True, help="Layer whose residual-stream output the SAE reads.")
@click.option("--width", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "width"), show_default=True, help="Number of SAE features.")
@click.option("--k", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "k"), show_default=True, help="Active features per token (TopK SAE).")
@click.option("--corpus", default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "corpus.source"), show_default=True, help="'builtin' (WordNet sentences with categories), a .txt/.jsonl file or folder, or a HF dataset id.")
@click.option("--text-field", default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "corpus.text_field"), show_default=True, help="JSONL / dataset field holding the text.")
@click.option("--samples", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "samples"), show_default=True, help="Training texts (windows).")
@click.option("--heldout-samples", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "heldout_samples"), show_default=True, help="Held-out texts for evaluation and labels.")
@click.option("--training-tokens", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "training_tokens"), show_default=True, help="Tokens shown to the SAE (epochs over the collected ones).")
@click.option("--seed", type=int, default=FieldDefault("atlas_align.atlas.build:AtlasBuildConfig", "seed"), show_default=True, help="Seed of the text draw, token order and SAE init (rebuilds are bit-for-bit).")
@click.option("--name", default=FieldDefault("atlas_align.atlas.build:build_atlas", "name"), show_default=True, help="Name recorded in atlas.json.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output atlas folder.")
@friendly_errors
def atlas_build(model, layer, width, k, corpus, text_field, samples, heldout_samples, training_tokens, seed, name, out):
    """Train a sae-lens SAE on a model's activations and auto-label its features on held-out texts.

    \b
    Example:
      atlas-align atlas build --model minilm --layer 3 --width 1536 --corpus builtin --samples 12000 --seed 0 --out my-atlas
    """
    from atlas_align.atlas.build import AtlasBuildConfig, build_atlas
    from atlas_align.corpus.sources import CorpusConfig

    cfg = AtlasBuildConfig(
        model=model, layer=layer, width=width, k=k, corpus=CorpusConfig(source=corpus, text_field=text_field), samples=samples,
        heldout_samples=heldout_samples, training_tokens=training_tokens, seed=seed,
    )
    built, report = build_atlas(cfg, name=name, progress=True, echo=click.echo)
    built.save(out)
    click.echo(f"Saved {built!r} to {out} in {report.seconds:.0f}s")
    click.echo(f"  L0 {report.l0:.1f}, explained variance {report.explained_variance:.3f}, dead {len(report.dead)}, dense {len(report.dense)}, validated labels {report.validated}")


@atlas.command("show")
@click.argument("spec", default="builtin")
@click.option("--top", type=int, default=15, show_default=True, help="How many validated labels to list.")
@json_option
@friendly_errors
def atlas_show(spec, top, as_json):
    """Describe an atlas ('builtin', a folder or a repo id) and list its best validated labels.

    \b
    Example:
      atlas-align atlas show builtin
    """
    from atlas_align.atlas.atlas import Atlas

    loaded = Atlas.load(spec)
    info = loaded.summary()
    best = sorted(loaded.labels.validated(), key=lambda x: -(x.score or 0.0))[:top]
    if as_json:
        click.echo(json.dumps(info | {"top_labels": [x.model_dump() for x in best]}, indent=2))
        return
    click.echo(repr(loaded))
    for key in ("model_id", "hookpoint", "d_in", "width", "labels", "validated_labels"):
        click.echo(f"  {key:<17} {info[key]}")
    if info["training"]:
        t = info["training"]
        click.echo(f"  {'training':<17} {t['architecture']} k={t['k']}, L0 {t['l0']:.1f}, explained variance {t['explained_variance']:.3f}, dead {t['dead_features']}, dense {t['dense_features']}")
    for item in best:
        click.echo(f"  #{item.feature:<6} {item.label:<48} AUROC={item.score:.3f}")


@atlas.command("search")
@click.argument("query")
@click.option("--atlas", "spec", default="builtin", show_default=True, help="'builtin' (the 4,096-feature built-in atlas; 'builtin-1536' is the first one), an atlas folder or a repo id.")
@click.option("--top-k", type=int, default=10, show_default=True)
@json_option
@click.option("--embedding-model", default=None, help="Rank labels semantically with this sentence encoder (e.g. 'minilm') instead of keywords.")
@friendly_errors
def atlas_search(query, spec, top_k, as_json, embedding_model):
    """Find atlas features whose label matches QUERY (validated labels first).

    \b
    Example:
      atlas-align atlas search animal --atlas builtin
      atlas-align atlas search canine --embedding-model minilm
    """
    from atlas_align.atlas.atlas import Atlas

    labels = Atlas.load(spec).labels
    if embedding_model:
        from atlas_align.atlas.label_embeddings import EmbeddingIndex, LabelEmbedder

        hits = EmbeddingIndex(labels, LabelEmbedder(embedding_model)).search(query, top_k=top_k)
    else:
        hits = labels.search(query, top_k=top_k)
    if as_json:
        click.echo(json.dumps([item.model_dump() | {"match": score} for item, score in hits], indent=2))
        return
    if not hits:
        click.echo(f"No label matches {query!r}.")
    for item, score in hits:
        extra = f"  AUROC={item.score:.3f} (validated)" if item.validated and item.score is not None else ""
        click.echo(f"  #{item.feature:<6} {item.label:<48} match={score:.2f}{extra}")
