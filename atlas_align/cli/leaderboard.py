"""`atlas-align leaderboard build / show / diff`: the cross-model leaderboard of alignment quality."""

from __future__ import annotations

import click

from atlas_align.cli.main import friendly_errors, token_option


@click.group()
def leaderboard() -> None:
    """Build and show the cross-model leaderboard of alignment quality."""


@leaderboard.command("build")
@click.option("--registry", "endpoint", envvar="HF_ENDPOINT", default=None, help="Hub or registry URL (default: $HF_ENDPOINT).")
@token_option
@click.option("--verify/--no-verify", default=True, show_default=True, help="Re-run the benchmarks for commits not verified yet.")
@click.option("--out", type=click.Path(file_okay=False), default="leaderboard", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=".cache/atlas-align/leaderboard", show_default=True, help="Verified results, keyed by commit sha.")
@friendly_errors
def leaderboard_build(endpoint, token, verify, out, cache_dir):
    """Collect alignments from a registry, verify them, and write leaderboard.json / LEADERBOARD.md / index.html.

    \b
    Example:
      atlas-align leaderboard build --registry http://127.0.0.1:8000 --out leaderboard/
    """
    from atlas_align.leaderboard.collect import collect
    from atlas_align.leaderboard.render import render
    from atlas_align.registry.hub import make_api

    board = collect(make_api(endpoint, token), verify=verify, cache_dir=cache_dir)
    paths = render(board, out)
    counts = {s: sum(r.status == s for r in board.rows) for s in ("verified", "corrected", "self-reported", "unevaluated", "refused")}
    click.echo(f"{len(board.rows)} alignments ({', '.join(f'{v} {k}' for k, v in counts.items() if v)}) → {', '.join(str(p) for p in paths.values())}")


@leaderboard.command("show")
@click.option("--path", type=click.Path(exists=True, dir_okay=False), default="leaderboard/leaderboard.json", show_default=True)
@friendly_errors
def leaderboard_show(path):
    """Print the leaderboard tables.

    \b
    Example:
      atlas-align leaderboard show
    """
    from atlas_align.leaderboard.render import load, to_markdown

    click.echo(to_markdown(load(path)))


@leaderboard.command("diff")
@click.argument("before", type=click.Path(dir_okay=False))
@click.argument("after", type=click.Path(exists=True, dir_okay=False))
@friendly_errors
def leaderboard_diff(before, after):
    """Print what changed between two leaderboard.json files (rows added/removed, metrics, status).

    \b
    Example:
      atlas-align leaderboard diff old/leaderboard.json leaderboard/leaderboard.json
    """
    from atlas_align.leaderboard.diff import diff_files

    lines = diff_files(before, after)
    click.echo("\n".join(lines) if lines else "no changes")
