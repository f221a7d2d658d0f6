"""`atlas-align align`: fit a translation between an atlas and a subject model, save the artifact."""

from __future__ import annotations

import click

from atlas_align.cli.main import FieldDefault, friendly_errors

REQUEST = "atlas_align.alignment.pipeline:AlignRequest"


def _default(path: str) -> FieldDefault:
    return FieldDefault(REQUEST, path)


def parse_value(text: str):
    """'false' → False, '3' → 3, '1e-3' → 0.001, 'none' → None; anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class LayerType(click.ParamType):
    """'20' → 20 (a block index), '-2' → -2 (from the end), '0.66' → 0.66 (a relative depth in [0, 1])."""

    name = "LAYER"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a layer", param, ctx)
        if isinstance(value, int | float):
            number = value
        else:
            text = str(value).strip()
            try:
                number = int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    self.fail(f"{value!r} is neither a block index (20, -2) nor a relative depth (0.66)", param, ctx)
        if isinstance(number, float) and not 0.0 <= number <= 1.0:
            self.fail(f"a relative depth must lie in [0, 1], got {number}; use an integer for a block index", param, ctx)
        return number


LAYER = LayerType()


def parse_layers(text: str) -> list[int | float] | str:
    """'all' → 'all'; '0.25,0.5,-2' → [0.25, 0.5, -2] (each as --layer reads it)."""
    if text.strip().lower() == "all":
        return "all"
    items = [t for t in (part.strip() for part in text.split(",")) if t]
    if not items:
        raise click.BadParameter("give 'all' or a comma-separated list such as 0.25,0.5,0.75,-2.", param_hint="--layers")
    return [LAYER.convert(item, None, None) for item in items]


def check_method(_ctx, _param, value: str) -> str:
    """Fail at request time (before any model loads) on an unknown method, with 'did you mean'."""
    from atlas_align.errors import UnknownNameError
    from atlas_align.fit.methods import METHODS

    try:
        METHODS.get(value)
    except UnknownNameError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def method_params(method: str, pairs: tuple[str, ...]) -> dict:
    """Repeatable ``--method-param key=value`` → typed kwargs for the method, checked against its signature."""
    import difflib
    import inspect

    from atlas_align.fit.methods import METHODS

    cls = METHODS.get(method)
    accepted = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}.", param_hint="--method-param")
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            takes = ", ".join(f"{n}={d!r}" for n, d in accepted.items()) or "no parameters"
            raise click.BadParameter(f"{method} has no parameter {key!r}{f' (did you mean {close[0]!r}?)' if close else ''}; it takes {takes}.", param_hint="--method-param")
        params[key] = parse_value(raw)
    try:
        cls(**params)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"{method}({', '.join(f'{k}={v!r}' for k, v in params.items())}): {exc}", param_hint="--method-param") from None
    return params


def print_report(result) -> None:
    rep = result.report
    click.echo(f"  fitted on N={result.statistics.n} shared texts in {result.seconds:.1f}s")
    if rep is not None:
        click.echo(f"  held-out check on {rep.n} texts (translate subject → atlas, find the matching text):")
        click.echo(f"    {'':24}{'fitted':>10}{'shuffled-pairs control':>26}{'chance':>10}")
        click.echo(f"    {'top-1 match':24}{rep.top1:>10.3f}{rep.control_top1:>26.3f}{rep.chance_top1:>10.3f}")
        click.echo(f"    {'MRR':24}{rep.mrr:>10.3f}{rep.control_mrr:>26.3f}")
        click.echo(f"    {'cosine (matched/shuffled)':24}{rep.matched_cosine:>10.3f}{rep.shuffled_cosine:>26.3f}")


def print_sweep_table(results) -> None:
    """One line per layer: held-out top-1 / MRR beside the shuffled-pairs control."""
    click.echo(f"layer sweep ({len(results)} layers, {results[0].seconds:.1f}s in all):" if results else "layer sweep: no layers")
    click.echo(f"  {'block':>6}{'top-1':>9}{'MRR':>9}{'control MRR':>14}")
    for result in results:
        rep = result.report
        cells = f"{rep.top1:>9.3f}{rep.mrr:>9.3f}{rep.control_mrr:>14.3f}" if rep is not None else f"{'—':>9}{'—':>9}{'—':>14}"
        click.echo(f"  {result.alignment.config.subject.layer:>6}{cells}")


def _packaged_names() -> str:
    from atlas_align.models.assets import KNOWN_MODELS

    return ", ".join(KNOWN_MODELS)


class _SubjectOption(click.Option):
    """--subject, whose help names every packaged model (read from KNOWN_MODELS only when help is shown)."""

    def get_help_record(self, ctx):
        self.help = f"Subject model: a Hub id, a local folder (or .gguf file), or a packaged offline model: {_packaged_names()}. `atlas-align models` lists them."
        return super().get_help_record(ctx)


@click.command()
@click.option("--subject", cls=_SubjectOption, default=_default("subject"), show_default=True)
@click.option("--layer", type=LAYER, default=_default("layer"), show_default=True, help="Subject layer: a block index (20), negative from the end (-2), or a relative depth in [0, 1] (0.66 → block round(0.66·(n−1))). Layer L is the output of block L (0-based) = hidden_states[L+1]; `atlas-align models NAME` lists the blocks.")
@click.option("--layers", default=None, metavar="LIST|all", help="Layer sweep: comma-separated layers as for --layer (0.25,0.5,0.75,-2) or 'all'; one forward pass per batch fits every layer, writing OUT/layer-<index>/.")
@click.option("--hookpoint", default=None, help="Explicit module path relative to model.base_model (overrides --layer), e.g. 'layers.20'.")
@click.option("--site", type=click.Choice(["resid", "mlp"]), default=_default("site"), show_default=True, help="Residual-stream block output or MLP output.")
@click.option("--atlas", default=_default("atlas"), show_default=True, help="'builtin' (the 4,096-feature built-in atlas; 'builtin-1536' is the first one), an atlas folder / repo id, or 'model:NAME@LAYER' for a raw model space.")
@click.option("--corpus", default=_default("corpus.source"), show_default=True, help="'builtin' (WordNet sentences), a .txt/.jsonl file or folder, or a HF dataset id.")
@click.option("--text-field", default=_default("corpus.text_field"), show_default=True, help="JSONL / dataset field holding the text.")
@click.option("--text-unit", type=click.Choice(["paragraph", "line", "window"]), default=_default("corpus.text_unit"), show_default=True, help=".txt files: one text per blank-line paragraph, per line (one sentence per line), or the whole file cut into windows.")
@click.option("--window-words", type=int, default=_default("corpus.window_words"), show_default=True, help="Texts are cut into windows of at most this many words.")
@click.option("--heldout-fraction", type=float, default=_default("corpus.heldout_fraction"), show_default=True, help="Share of windows kept out of the fit (for the held-out check and eval).")
@click.option("--samples", type=int, default=_default("samples"), show_default=True, help="Number of shared training texts (windows).")
@click.option("--heldout-samples", type=int, default=_default("heldout_samples"), show_default=True, help="Held-out texts for the check printed after the fit (0: none).")
@click.option("--method", default=_default("method"), show_default=True, callback=check_method, help="procrustes | covariance | correlation | linear_regression | whitened_procrustes | cca | random_rotation")
@click.option("--method-param", "method_param", multiple=True, metavar="KEY=VALUE", help="A method parameter, repeatable: e.g. --method-param center=false, --method-param alpha=0.01.")
@click.option("--pooling", type=click.Choice(["sequence", "unit", "unit-mean"]), default="sequence", show_default=True,
              help="Fit on one pooled row per text (sequence), or per word both tokenizers share (unit: max over its tokens; unit-mean: mean).")  # fmt: skip
@click.option("--batch-size", type=int, default=_default("batch_size"), show_default=True)
@click.option("--max-length", type=int, default=_default("max_length"), show_default=True, help="Max tokens per text.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default=_default("dtype"), show_default=True)
@click.option("--seed", type=int, default=_default("seed"), show_default=True, help="Seed of the fit and the shuffled-pairs control.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder for the artifact.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Save statistics here every --checkpoint-every chunks (atomic).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=FieldDefault("atlas_align.alignment.pipeline:run_alignment", "checkpoint_every"), show_default=True, help="Chunks (of 64 texts) between checkpoints.")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint.")
@click.option("--distributed", is_flag=True, help="Data-parallel under torchrun: each rank pools a share, one all_reduce, rank 0 saves.")
@friendly_errors
def align(subject, layer, layers, hookpoint, site, atlas, corpus, text_field, text_unit, window_words, heldout_fraction, samples, heldout_samples, method, method_param, pooling, batch_size, max_length, dtype, seed, out, checkpoint, checkpoint_every, resume, distributed):
    """Fit a translation between an atlas and a subject model on shared texts, and save the artifact.

    \b
    Example:
      atlas-align align --subject smollm2 --layer 20 --atlas builtin --samples 4000 --out runs/smollm2-l20
      atlas-align align --subject gemma3-270m --layers 0.25,0.5,0.75,-2 --out runs/gemma-sweep
      atlas-align align --corpus my_sentences.txt --text-unit line --out runs/mine
      atlas-align align --method linear_regression --method-param alpha=0.01 --out runs/ridge
      atlas-align align --subject smollm2 --layer 19 --pooling unit --samples 1000 --out runs/smollm2-l19-unit
      torchrun --nproc_per_node 2 -m atlas_align.cli align --distributed --subject smollm2 --out runs/smollm2-l20
    """
    from pathlib import Path

    from atlas_align.alignment import pipeline
    from atlas_align.corpus.sources import CorpusConfig

    ctx = click.get_current_context()
    sweep = parse_layers(layers) if layers is not None else None
    if sweep is not None:
        explicit = [f"--{name}" for name in ("layer", "hookpoint", "checkpoint", "resume", "distributed") if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if explicit:
            raise click.BadParameter(f"--layers runs a sweep; it does not combine with {', '.join(explicit)}.", param_hint="--layers")
    req = pipeline.AlignRequest(
        subject=subject, layer=None if hookpoint else layer, hookpoint=hookpoint, site=site, atlas=atlas,
        corpus=CorpusConfig(source=corpus, text_field=text_field, text_unit=text_unit, window_words=window_words, heldout_fraction=heldout_fraction),
        samples=samples, heldout_samples=heldout_samples,
        method=method, method_params=method_params(method, method_param), batch_size=batch_size, max_length=max_length,
        dtype=dtype, seed=seed, unit_pooling={"sequence": None, "unit": "max", "unit-mean": "mean"}[pooling],
    )
    if sweep is not None:
        results = pipeline.run_alignment_sweep(req, sweep, log=click.echo)
        for result in results:
            folder = Path(out) / f"layer-{result.alignment.config.subject.layer}"
            result.alignment.save_pretrained(folder)
            click.echo(f"Saved {result.alignment!r} to {folder}")
            print_report(result)
        print_sweep_table(results)
        return
    if distributed:
        result = pipeline.align_distributed(req, out, checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every)
        if result is None:  # ranks other than 0 have nothing to print
            return
    else:
        result = pipeline.run_alignment(req, checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every, log=click.echo)
        result.alignment.save_pretrained(out)
    click.echo(f"Saved {result.alignment!r} to {out}")
    print_report(result)
