"""`atlas-align search`: atlas features for a query and the subject neurons that carry them."""

from __future__ import annotations

import json

import click

from atlas_align.cli.main import friendly_errors, json_option, revision_option


@click.command()
@click.argument("artifact")
@click.argument("query")
@revision_option
@click.option("--top-k", type=int, default=10, show_default=True)
@click.option("--scoring", type=click.Choice(["cosine", "csls"]), default="cosine", show_default=True, help="csls: discount 'hub' neurons close to many atlas concepts (CSLS, Conneau et al. 2018).")
@click.option("--csls-k", type=int, default=10, show_default=True, help="With --scoring csls: nearest atlas feature directions that define a neuron's hubness.")
@json_option
@friendly_errors
def search(artifact, query, revision, top_k, scoring, csls_k, as_json):
    """Find atlas features for QUERY and the subject neurons that carry them.

    \b
    Example:
      atlas-align search atlas-align-demo animal
    """
    from atlas_align.alignment.model import AtlasAlignment

    al = AtlasAlignment.from_pretrained(artifact, revision=revision)
    query_value = int(query) if query.isdigit() else query
    res = al.search(query_value, top_k=top_k, scoring=scoring, csls_k=csls_k)
    if as_json:
        click.echo(json.dumps({"atlas_features": [{"feature": f.feature, "label": f.label, "score": s} for f, s in res.atlas_features], "subject_features": res.subject_features}, indent=2))
        return
    click.echo(f"Atlas features for {query!r}:")
    for feat, score in res.atlas_features:
        click.echo(f"  #{feat.feature:<6} {feat.label:<40} match={score:.2f}{'  (validated)' if feat.validated else ''}")
    click.echo(f"Subject neurons of {al.config.subject.model_id} at {al.config.subject.hookpoint}:")
    for index, sim in res.subject_features:
        click.echo(f"  neuron {index:<6} similarity={sim:+.3f}")
