"""`atlas-align eval`: the versioned benchmarks on an alignment → eval_results.json, the card and the plot."""

from __future__ import annotations

import json

import click

from atlas_align.cli.main import FieldDefault, endpoint_option, friendly_errors, revision_option, token_option


@click.command(name="eval")
@click.argument("artifact")
@click.option("--benchmarks", default=FieldDefault("atlas_align.harness.evaluation:evaluate", "benchmarks", ",".join), show_default=True, help="Comma-separated benchmark names (name or name@version).")
@click.option("--samples", type=int, default=FieldDefault("atlas_align.harness.evaluation:evaluate", "samples"), show_default=True, help="Held-out texts (a seeded sample of the alignment corpus's held-out split).")
@click.option("--seed", type=int, default=FieldDefault("atlas_align.harness.evaluation:evaluate", "seed"), show_default=True, help="Seed for feature sampling, held-out sampling and the shuffled-T control.")
@revision_option
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Where a downloaded repo's artifact and results go (default: ORG--NAME-eval).")
@click.option("--atlas", "atlas_spec", default=None, help="Override the atlas the artifact records ('builtin', a folder or a repo id).")
@click.option("--concepts", default=None, help="steering: comma-separated categories, e.g. noun.animal,noun.food.")
@click.option("--push", "push_repo", default=None, help="Afterwards, push the artifact folder (with its results) to this repo.")
@click.option("--tag", default=None, help="With --push: tag the new commit.")
@endpoint_option
@token_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@friendly_errors
def eval_command(artifact, benchmarks, samples, seed, revision, out, atlas_spec, concepts, push_repo, tag, endpoint, token, as_json):
    """Run the versioned benchmarks on an alignment and write eval_results.json, the card and the plot.

    Progress goes to stderr, one line per benchmark. A benchmark that does not apply is skipped with
    its reason (on a raw-layer atlas, `model:NAME@LAYER`, retrieval and steering need labels it has
    not got; steering needs a causal LM); the others still run.

    \b
    Example:
      atlas-align eval runs/smollm2-l20 --benchmarks translation,retrieval --samples 1000
      atlas-align eval runs/smollm2-l20 --push my-org/smollm2-l20-atlas --tag v1.0-eval
    """
    from atlas_align.harness.evaluation import evaluate, format_tables

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    params = {"steering": {"concepts": [c.strip() for c in concepts.split(",")]}} if concepts else None
    report = evaluate(artifact, names, samples=samples, seed=seed, revision=revision, out=out, atlas=atlas_spec, params=params, log=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps({k: v.model_dump(mode="json") for k, v in report.results.items()}, indent=2))
    else:
        click.echo(format_tables(report.results, report.skipped))
        click.echo(f"Wrote {', '.join(p.name for p in report.files)} to {report.folder}")
    if push_repo:
        from atlas_align.registry.hub import make_api, push_folder

        result = push_folder(make_api(endpoint, token), report.folder, push_repo, tag=tag, commit_message=f"atlas-align eval: {', '.join(report.results)}")
        click.echo(f"Pushed {report.folder} → {push_repo} @ {result['commit'][:12]}" + (f" (tag {tag})" if tag else ""))
