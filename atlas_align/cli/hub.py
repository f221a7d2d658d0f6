"""`atlas-align push` / `pull`: publish an alignment folder to the Hub (or a registry server), fetch one back."""

from __future__ import annotations

import click

from atlas_align.cli.main import endpoint_option, friendly_errors, token_option


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id")
@click.option("--tag", default=None, help="Tag the new commit, e.g. v1.0.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--message", default=None, help="Commit message.")
@endpoint_option
@token_option
@friendly_errors
def push(folder, repo_id, tag, private, message, endpoint, token):
    """Publish an alignment folder to the Hub (or a registry server) as one commit.

    \b
    Example:
      atlas-align push runs/smollm2-l20 my-org/smollm2-l20-atlas --tag v1.0
    """
    from atlas_align.registry.hub import make_api, push_folder

    result = push_folder(make_api(endpoint, token), folder, repo_id, tag=tag, private=private, commit_message=message)
    click.echo(f"Pushed {folder} → {repo_id} @ {result['commit'][:12]}" + (f" (tag {tag})" if tag else ""))


@click.command()
@click.argument("repo_id")
@click.option("--revision", default=None, help="Branch, tag or commit sha (default: main).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Copy the files here (default: only the HF cache).")
@endpoint_option
@token_option
@friendly_errors
def pull(repo_id, revision, out, endpoint, token):
    """Download an alignment at a revision, verify it, and print what it is.

    \b
    Example:
      atlas-align pull my-org/smollm2-l20-atlas --revision v1.0 --out ./smollm2-l20
    """
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.registry.hub import make_api

    api = make_api(endpoint, token)
    folder = api.snapshot_download(repo_id, revision=revision, local_dir=out)
    alignment = AtlasAlignment.from_pretrained(folder)
    click.echo(f"{alignment!r}\n  files: {folder}")
