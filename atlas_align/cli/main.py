"""`atlas-align` command line: thin click commands that call one library function and print."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from atlas_align.errors import AtlasAlignError


def _user_error_message(exc: Exception) -> str | None:
    """The one table mapping user-caused errors to messages; None means a real bug (traceback)."""
    from pydantic import ValidationError

    if isinstance(exc, AtlasAlignError):
        return str(exc)
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return f"Invalid option value ({problems}). See --help."
    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, HfHubHTTPError):
        return f"The Hub/registry refused the request: {str(exc).splitlines()[0]}. Check HF_ENDPOINT, HF_TOKEN and the repo id."
    return None


def friendly_errors(func):
    """Map user mistakes to a one-line message and exit code 2 (no traceback for user mistakes)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            message = _user_error_message(exc)
            if message is None:
                raise
            click.secho(f"Error: {message}", fg="red", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="atlas-align", message="%(version)s")
def main() -> None:
    """Align any model to a labelled Concept Atlas; search, explain and steer it; publish and evaluate.

    \b
    Quick start (offline, real models, a few minutes on a laptop CPU):
      atlas-align demo
    """


def _print_report(result) -> None:
    rep = result.report
    click.echo(f"  fitted on N={result.statistics.n} shared texts in {result.seconds:.1f}s")
    if rep is not None:
        click.echo(f"  held-out check on {rep.n} texts (translate subject → atlas, find the matching text):")
        click.echo(f"    {'':24}{'fitted':>10}{'shuffled-pairs control':>26}{'chance':>10}")
        click.echo(f"    {'top-1 match':24}{rep.top1:>10.3f}{rep.control_top1:>26.3f}{rep.chance_top1:>10.3f}")
        click.echo(f"    {'MRR':24}{rep.mrr:>10.3f}{rep.control_mrr:>26.3f}")
        click.echo(f"    {'cosine (matched/shuffled)':24}{rep.matched_cosine:>10.3f}{rep.shuffled_cosine:>26.3f}")


@main.command()
@click.option("--subject", default="smollm2", show_default=True, help="Subject model: a Hub id, a local folder, or an offline alias (smollm2, minilm, mpnet).")
@click.option("--layer", type=int, default=20, show_default=True, help="Subject layer index (negative counts from the end).")
@click.option("--hookpoint", default=None, help="Explicit module path relative to model.base_model (overrides --layer), e.g. 'layers.20'.")
@click.option("--site", type=click.Choice(["resid", "mlp"]), default="resid", show_default=True, help="Residual-stream block output or MLP output.")
@click.option("--atlas", default="builtin", show_default=True, help="'builtin', an atlas folder / repo id, or 'model:NAME@LAYER' for a raw model space.")
@click.option("--corpus", default="builtin", show_default=True, help="'builtin' (WordNet sentences), a .txt/.jsonl file or folder, or a HF dataset id.")
@click.option("--text-field", default="text", show_default=True, help="JSONL / dataset field holding the text.")
@click.option("--samples", type=int, default=4000, show_default=True, help="Number of shared training texts (windows).")
@click.option("--method", default="procrustes", show_default=True, help="procrustes | covariance | correlation | linear_regression | random_rotation")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True, help="Max tokens per text.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder for the artifact.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Save statistics here every --checkpoint-every chunks (atomic).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=50, show_default=True, help="Chunks (of 64 texts) between checkpoints.")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint.")
@click.option("--distributed", is_flag=True, help="Data-parallel under torchrun: each rank pools a share, one all_reduce, rank 0 saves.")
@friendly_errors
def align(subject, layer, hookpoint, site, atlas, corpus, text_field, samples, method, batch_size, max_length, dtype, out, checkpoint, checkpoint_every, resume, distributed):
    """Fit a translation between an atlas and a subject model on shared texts, and save the artifact.

    \b
    Example:
      atlas-align align --subject smollm2 --layer 20 --atlas builtin --samples 4000 --out runs/smollm2-l20
      torchrun --nproc_per_node 2 -m atlas_align.cli.main align --distributed --subject smollm2 --out runs/smollm2-l20
    """
    from atlas_align.alignment.pipeline import AlignRequest, run_alignment
    from atlas_align.corpus.sources import CorpusConfig

    req = AlignRequest(
        subject=subject, layer=None if hookpoint else layer, hookpoint=hookpoint, site=site, atlas=atlas,
        corpus=CorpusConfig(source=corpus, text_field=text_field), samples=samples, method=method,
        batch_size=batch_size, max_length=max_length, dtype=dtype,
    )
    if distributed:
        from atlas_align.alignment.pipeline import align_distributed

        result = align_distributed(req, out, checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every)
        if result is None:  # ranks other than 0 have nothing to print
            return
    else:
        result = run_alignment(req, checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every)
        result.alignment.save_pretrained(out)
    click.echo(f"Saved {result.alignment!r} to {out}")
    _print_report(result)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="atlas-align-demo", show_default=True, help="Where the demo writes its artifact.")
@click.option("--samples", type=int, default=2000, show_default=True, help="Shared training texts.")
@friendly_errors
def demo(out, samples):
    """Run the whole chain offline on real pretrained models: align, save, reload, search, explain, steer.

    \b
    Example:
      atlas-align demo --out atlas-align-demo
    """
    from atlas_align.cli.demo import run_demo

    run_demo(Path(out), samples=samples, echo=click.echo)


@main.command()
@click.argument("artifact")
@click.argument("query")
@click.option("--revision", default=None, help="Branch, tag or commit sha when ARTIFACT is a repo id.")
@click.option("--top-k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def search(artifact, query, revision, top_k, as_json):
    """Find atlas features for QUERY and the subject neurons that carry them.

    \b
    Example:
      atlas-align search atlas-align-demo animal
    """
    from atlas_align.alignment.model import AtlasAlignment

    al = AtlasAlignment.from_pretrained(artifact, revision=revision)
    query_value = int(query) if query.isdigit() else query
    res = al.search(query_value, top_k=top_k)
    if as_json:
        click.echo(json.dumps({"atlas_features": [{"feature": f.feature, "label": f.label, "score": s} for f, s in res.atlas_features], "subject_features": res.subject_features}, indent=2))
        return
    click.echo(f"Atlas features for {query!r}:")
    for feat, score in res.atlas_features:
        click.echo(f"  #{feat.feature:<6} {feat.label:<40} match={score:.2f}{'  (validated)' if feat.validated else ''}")
    click.echo(f"Subject neurons of {al.config.subject.model_id} at {al.config.subject.hookpoint}:")
    for index, sim in res.subject_features:
        click.echo(f"  neuron {index:<6} similarity={sim:+.3f}")


# --- publishing -------------------------------------------------------------------------------
_endpoint_option = click.option("--endpoint", envvar="HF_ENDPOINT", default=None, help="Hub or registry server URL (default: $HF_ENDPOINT, else huggingface.co).")
_token_option = click.option("--token", envvar="HF_TOKEN", default=None, help="Access token (default: $HF_TOKEN or the cached login).")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id")
@click.option("--tag", default=None, help="Tag the new commit, e.g. v1.0.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--message", default=None, help="Commit message.")
@_endpoint_option
@_token_option
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


@main.command()
@click.argument("repo_id")
@click.option("--revision", default=None, help="Branch, tag or commit sha (default: main).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Copy the files here (default: only the HF cache).")
@_endpoint_option
@_token_option
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


@main.group()
def registry() -> None:
    """Run and query a Hub-compatible registry server (for air-gapped labs and CI)."""


@registry.command("serve")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="Folder holding the registry's database and blobs.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--lfs-threshold", type=int, default=None, help="Files of at least this many bytes go through LFS (clients need HF_HUB_DISABLE_XET=1); default: all inline.")
@friendly_errors
def registry_serve(root, host, port, lfs_threshold):
    """Serve the Hub HTTP API subset the huggingface_hub client uses.

    \b
    Example:
      atlas-align registry serve --root ./registry --port 8000
      export HF_ENDPOINT=http://127.0.0.1:8000 HF_HUB_DISABLE_XET=1
    """
    from atlas_align.registry.server.app import serve

    serve(root, host=host, port=port, lfs_threshold=lfs_threshold)


@registry.group("token")
def registry_token() -> None:
    """Manage access tokens of a registry server."""


@registry_token.command("create")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="The registry's folder.")
@click.option("--user", required=True, help="User (namespace) the token writes to.")
@click.option("--read-only", is_flag=True, help="A token that can only read (private repos of that user).")
@friendly_errors
def registry_token_create(root, user, read_only):
    """Create a token and print it once (only its hash is stored).

    \b
    Example:
      export HF_TOKEN=$(atlas-align registry token create --root ./registry --user my-org)
    """
    from atlas_align.registry.server.store import create_token

    click.echo(create_token(root, user, write=not read_only))


@registry.command("versions")
@click.argument("repo_id")
@_endpoint_option
@_token_option
@friendly_errors
def registry_versions(repo_id, endpoint, token):
    """List the tags, branches and commits of an alignment repo.

    \b
    Example:
      atlas-align registry versions my-org/smollm2-l20-atlas
    """
    from atlas_align.registry.hub import list_versions, make_api

    versions = list_versions(make_api(endpoint, token), repo_id)
    for kind in ("tags", "branches"):
        for ref in versions[kind]:
            click.echo(f"{kind[:-1]:<7} {ref['name']:<20} {ref['commit'][:12]}")
    for commit in versions["commits"]:
        click.echo(f"commit  {commit['commit'][:12]}  {commit['date'] or '':<26} {commit['title']}")


@registry.command("ls")
@click.option("--search", default=None, help="Substring of the repo id.")
@click.option("--author", default=None, help="Namespace.")
@_endpoint_option
@_token_option
@friendly_errors
def registry_ls(search, author, endpoint, token):
    """List alignment repos (tag atlas-alignment) in a registry.

    \b
    Example:
      atlas-align registry ls --author my-org
    """
    from atlas_align.registry.hub import list_alignments, make_api

    for repo in list_alignments(make_api(endpoint, token), search=search, author=author):
        click.echo(f"{repo['id']:<50} {(repo['sha'] or '')[:12]}")


# --- leaderboard ------------------------------------------------------------------------------
@main.group()
def leaderboard() -> None:
    """Build and show the cross-model leaderboard of alignment quality."""


@leaderboard.command("build")
@click.option("--registry", "endpoint", envvar="HF_ENDPOINT", default=None, help="Hub or registry URL (default: $HF_ENDPOINT).")
@_token_option
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
    counts = {s: sum(r.status == s for r in board.rows) for s in ("verified", "corrected", "self-reported", "unevaluated")}
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


# --- atlas ------------------------------------------------------------------------------------
@main.group()
def atlas() -> None:
    """Build, inspect and search Concept Atlases (a model + a sae-lens SAE + feature labels)."""


@atlas.command("build")
@click.option("--model", default="minilm", show_default=True, help="Foundation model: offline alias (minilm, mpnet, ...), local folder or Hub id.")
@click.option("--layer", type=int, default=3, show_default=True, help="Layer whose residual-stream output the SAE reads.")
@click.option("--width", type=int, default=1536, show_default=True, help="Number of SAE features.")
@click.option("--k", type=int, default=24, show_default=True, help="Active features per token (TopK SAE).")
@click.option("--corpus", default="builtin", show_default=True, help="'builtin' (WordNet sentences with categories), a .txt/.jsonl file or folder, or a HF dataset id.")
@click.option("--text-field", default="text", show_default=True, help="JSONL / dataset field holding the text.")
@click.option("--samples", type=int, default=12000, show_default=True, help="Training texts (windows).")
@click.option("--heldout-samples", type=int, default=4000, show_default=True, help="Held-out texts for evaluation and labels.")
@click.option("--training-tokens", type=int, default=500_000, show_default=True, help="Tokens shown to the SAE (epochs over the collected ones).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the text draw, token order and SAE init (rebuilds are bit-for-bit).")
@click.option("--name", default="local", show_default=True, help="Name recorded in atlas.json.")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
@click.option("--atlas", "spec", default="builtin", show_default=True, help="'builtin', an atlas folder or a repo id.")
@click.option("--top-k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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


# --- evaluation ------------------------------------------------------------------------------
@main.command(name="eval")
@click.argument("artifact")
@click.option("--benchmarks", default="translation,retrieval,steering", show_default=True, help="Comma-separated benchmark names (name or name@version).")
@click.option("--samples", type=int, default=1000, show_default=True, help="Held-out texts (a seeded sample of the alignment corpus's held-out split).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for feature sampling, held-out sampling and the shuffled-T control.")
@click.option("--revision", default=None, help="Branch, tag or commit sha when ARTIFACT is a repo id.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Where a downloaded repo's artifact and results go (default: ORG--NAME-eval).")
@click.option("--atlas", "atlas_spec", default=None, help="Override the atlas the artifact records ('builtin', a folder or a repo id).")
@click.option("--concepts", default=None, help="steering: comma-separated categories, e.g. noun.animal,noun.food.")
@click.option("--push", "push_repo", default=None, help="Afterwards, push the artifact folder (with its results) to this repo.")
@click.option("--tag", default=None, help="With --push: tag the new commit.")
@_endpoint_option
@_token_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@friendly_errors
def eval_command(artifact, benchmarks, samples, seed, revision, out, atlas_spec, concepts, push_repo, tag, endpoint, token, as_json):
    """Run the versioned benchmarks on an alignment and write eval_results.json, the card and the plot.

    \b
    Example:
      atlas-align eval runs/smollm2-l20 --benchmarks translation,retrieval --samples 1000
      atlas-align eval runs/smollm2-l20 --push my-org/smollm2-l20-atlas --tag v1.0-eval
    """
    from atlas_align.harness.evaluation import evaluate, format_tables

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    params = {"steering": {"concepts": [c.strip() for c in concepts.split(",")]}} if concepts else None
    report = evaluate(artifact, names, samples=samples, seed=seed, revision=revision, out=out, atlas=atlas_spec, params=params)
    if as_json:
        click.echo(json.dumps({k: v.model_dump(mode="json") for k, v in report.results.items()}, indent=2))
    else:
        click.echo(format_tables(report.results))
        click.echo(f"Wrote {', '.join(p.name for p in report.files)} to {report.folder}")
    if push_repo:
        from atlas_align.registry.hub import make_api, push_folder

        result = push_folder(make_api(endpoint, token), report.folder, push_repo, tag=tag, commit_message=f"atlas-align eval: {', '.join(report.results)}")
        click.echo(f"Pushed {report.folder} → {push_repo} @ {result['commit'][:12]}" + (f" (tag {tag})" if tag else ""))


@main.group()
def steer() -> None:
    """Steering vectors from an alignment, for other tools."""


@steer.command("export")
@click.argument("artifact")
@click.option("--concept", required=True, help="Feature ids ('12;40'), a category ('noun.animal') or a label query ('animal').")
@click.option("--strength", type=float, required=True, help="λ: the vector is λ times the unit concept direction.")
@click.option("--out", type=click.Path(dir_okay=False), default="steer.pt", show_default=True, help="Output .pt file.")
@click.option("--revision", default=None, help="Branch, tag or commit sha when ARTIFACT is a repo id.")
@friendly_errors
def steer_export(artifact, concept, strength, out, revision):
    """Write lm-eval's `steered` .pt file (hookpoint relative to base_model, action 'add').

    \b
    Example:
      atlas-align steer export runs/smollm2-l20 --concept noun.animal --strength 64 --out steer.pt
      lm-eval run --model steered --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct,steer_path=steer.pt --tasks ...
    """
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.harness.lm_eval import export_lm_eval_steering

    alignment = AtlasAlignment.from_pretrained(artifact, revision=revision)
    path = export_lm_eval_steering(alignment, concept, strength, out)
    click.echo(f"Wrote {path} (hookpoint {alignment.config.subject.hookpoint}, λ={strength:g}); note lm-eval adds the vector without restoring the norm.")


if __name__ == "__main__":  # pragma: no cover
    main()
