"""`evaluate`: run versioned benchmarks on an alignment artifact and write the results beside it.

Writes into the artifact folder (each file atomically): ``eval_results.json`` (every benchmark's
full result, merged with earlier runs of other benchmarks), ``metrics.png`` (fitted vs control
bars), ``.eval_results/<name>-v<version>.yaml`` (the Hub's eval-results convention) and a
regenerated ``README.md`` whose metrics table and model-index carry the numbers.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from atlas_align.alignment.model import AtlasAlignment
from atlas_align.corpus.sources import CorpusConfig, Sample, iter_samples
from atlas_align.errors import ConfigError, IntegrityError
from atlas_align.files import CARD_FILENAME, CONFIG_FILENAME, EVAL_RESULTS_FILENAME, LABELS_FILENAME, WEIGHTS_FILENAME, atomic_write_text
from atlas_align.harness.benchmarks import BenchmarkContext, BenchmarkResult, benchmark_key, get_benchmark
from atlas_align.harness.benchmarks.base import Benchmark, NotApplicable, validated_concepts
from atlas_align.models.cache import ActivationCache, CachedSpace, atlas_identity, subject_identity
from atlas_align.refs import AtlasSpec, SubjectSpec

DEFAULT_BENCHMARKS = ("translation", "pairs", "retrieval", "steering")
PLOT_FILENAME = "metrics.png"
EVAL_RESULTS_DIRNAME = ".eval_results"
EVAL_FORMAT_VERSION = 1
SOURCE_URL = "https://github.com/atlas-align/atlas-align"
# Headline metrics drawn in metrics.png and listed first in the card.
HEADLINE = {"translation": ("auroc", "ap"), "pairs": ("top1", "mrr"), "retrieval": ("mrr", "mpp"), "steering": ("axbench_atlas", "faithfulness_lexicon", "faithfulness_atlas", "faithfulness_llm")}


@dataclass
class EvalReport:
    folder: Path
    alignment: AtlasAlignment
    results: dict[str, BenchmarkResult]
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark key → why it does not apply


# ------------------------------------------------------------------------------------ inputs


def heldout_samples(corpus: CorpusConfig, n: int, seed: int) -> list[Sample]:
    """A uniform seeded sample of ``n`` held-out windows of the whole corpus (in hash order, so neighbours are unrelated).

    Sampling, not the first n, because corpora are often sorted (the built-in one by category).
    """
    return list(iter_samples(corpus.model_copy(update={"sampling": "uniform", "sample_seed": seed}), "heldout", limit=n))


def corpus_of(alignment: AtlasAlignment) -> CorpusConfig:
    """The corpus (and so the held-out split) the alignment was fitted on; the built-in one if unrecorded."""
    ref = alignment.config.corpus
    if ref is None:
        return CorpusConfig()
    return CorpusConfig(
        source=ref.source, window_words=ref.window_words, heldout_fraction=ref.heldout_fraction, split_salt=ref.split_salt,
        sampling=ref.sampling, sample_seed=ref.sample_seed, text_unit=ref.text_unit,
    )


def load_atlas_for(alignment: AtlasAlignment, spec: str | None, *, batch_size: int, max_length: int):
    """The atlas space the alignment targets, at the recorded revision (``spec`` overrides the recorded atlas)."""
    from atlas_align.atlas.spaces import load_atlas_space

    target = AtlasSpec.parse(spec) if spec else AtlasSpec.from_ref(alignment.config.atlas)
    return load_atlas_space(target, batch_size=batch_size, max_length=max_length, pooling=alignment.config.pooling)


def build_context(alignment: AtlasAlignment, *, samples: int = 1000, seed: int = 0, subject_bundle=None, subject_space=None, atlas_space=None, atlas: str | None = None, heldout: Sequence[Sample] | None = None, batch_size: int = 16, max_length: int = 128, artifact_revision: str | None = None) -> BenchmarkContext:
    """Load the subject and atlas an alignment names and draw its held-out texts.

    Pass ``subject_bundle`` ((model, tokenizer, id)), ``subject_space`` / ``atlas_space`` (anything with
    ``pooled_batches``) or ``heldout`` to reuse what is already loaded or precomputed.
    """
    from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
    from atlas_align.models.loading import load_subject

    cfg = alignment.config
    model = tokenizer = None
    if subject_space is None or subject_bundle is not None:
        model, tokenizer, _ = subject_bundle or load_subject(SubjectSpec.from_ref(cfg.subject).model)
    cache = ActivationCache.from_env()  # ATLAS_ALIGN_ACTIVATION_CACHE: re-evaluating never re-runs a model on the same texts
    if subject_space is None:
        spec = SubjectSpec.from_ref(cfg.subject)
        hook = resolve_hookpoint(model, layer=spec.layer, site=spec.site, path=spec.hookpoint)
        subject_space = ActivationExtractor(model, tokenizer, hook, batch_size=batch_size, max_length=max_length, pooling=cfg.pooling)
        if cache is not None:
            subject_space = CachedSpace(subject_space, subject_identity(cfg.subject.model_id, hook.path, cfg.pooling, max_length), cache)
    space = atlas_space
    if space is None:
        space = load_atlas_for(alignment, atlas, batch_size=batch_size, max_length=max_length)
        if cache is not None:
            space = CachedSpace(space, atlas_identity(space.ref.atlas_id, space.ref.revision, max_length), cache)
    if space.width != cfg.d_c:
        raise ConfigError(f"The atlas has {space.width} features but the alignment's T has d_c={cfg.d_c}: wrong atlas for this artifact.")
    texts = list(heldout) if heldout is not None else heldout_samples(corpus_of(alignment), samples, seed)
    causal = model is not None and getattr(model, "can_generate", lambda: False)()
    return BenchmarkContext(
        alignment=alignment, subject=subject_space, atlas=space, heldout=texts,
        model=model if causal else None, tokenizer=tokenizer if causal else None,
        artifact_revision=artifact_revision, seed=seed,
    )  # fmt: skip


def _steering_prerequisites(ctx: BenchmarkContext) -> str | None:
    if ctx.model is None:
        return f"steering needs a causal LM subject that can generate; {ctx.alignment.config.subject.model_id} cannot."
    if not validated_concepts(ctx.labels):
        raw = getattr(getattr(ctx.atlas, "ref", None), "kind", None) == "raw"
        return "steering needs validated atlas features with a category label; " + ("a raw-layer atlas (model:NAME@LAYER) has none." if raw else "this alignment's atlas has none.")
    return None


# Checks of benchmarks that do not declare ``not_applicable`` themselves, by benchmark name.
PREREQUISITES: dict[str, Callable[[BenchmarkContext], str | None]] = {"steering": _steering_prerequisites}


def skip_reason(bench: Benchmark, ctx: BenchmarkContext) -> str | None:
    """Why ``bench`` does not apply to this alignment, or None."""
    check = PREREQUISITES.get(bench.name)
    return bench.not_applicable(ctx) or (check(ctx) if check else None)


def run_benchmarks(ctx: BenchmarkContext, benchmarks: Sequence[str] = DEFAULT_BENCHMARKS, params: dict[str, dict[str, Any]] | None = None, *, log: Callable[[str], None] | None = None, skipped: dict[str, str] | None = None) -> dict[str, BenchmarkResult]:
    """Run each benchmark (bare names resolve to their latest version) on one shared context.

    A benchmark that does not apply (no labels on a raw-layer atlas, no causal LM for steering) is
    left out and its reason stored in ``skipped``; without a ``skipped`` dict it raises
    :class:`NotApplicable`. ``log`` receives one line as each benchmark starts and ends.
    """
    params = params or {}
    results = {}
    say = log or (lambda _message: None)
    for i, name in enumerate(benchmarks, 1):
        key = benchmark_key(name)
        bare = key.partition("@")[0]  # settings may name the benchmark bare ("steering") or versioned ("steering@3")
        bench = get_benchmark(key, **next((params[k] for k in (name, key, bare) if k in params), {}))
        reason = skip_reason(bench, ctx)
        if reason is None:
            say(f"[{i}/{len(benchmarks)}] {key}: running on {len(ctx.heldout)} held-out texts ...")
            start = time.perf_counter()
            try:
                results[key] = bench.run(ctx)
            except NotApplicable as exc:
                reason = str(exc)
            else:
                say(f"[{i}/{len(benchmarks)}] {key}: done in {time.perf_counter() - start:.1f}s")
        if reason is not None:
            if skipped is None:
                raise NotApplicable(reason)
            skipped[key] = reason
            say(f"[{i}/{len(benchmarks)}] {key}: skipped — {reason}")
    return results


# ------------------------------------------------------------------------------------ outputs


def metric_rows(results: dict[str, BenchmarkResult]) -> list[dict[str, Any]]:
    """Card rows: headline metrics first, then every other metric that has a control or chance level."""
    rows = []
    for result in results.values():
        all_rows = [r for r in result.metric_rows() if r["control"] is not None]
        first = HEADLINE.get(result.name, ())
        rows += sorted(all_rows, key=lambda r: (r["name"] not in first, first.index(r["name"]) if r["name"] in first else 0))
    return rows


def plot_metrics(results: dict[str, BenchmarkResult], path: Path) -> Path:
    """Grouped bars of the headline metrics: fitted, shuffled-T control, chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, fitted, control, chance = [], [], [], []
    for result in results.values():
        for metric in HEADLINE.get(result.name, ()):
            if metric in result.metrics:
                names.append(f"{result.name}\n{metric}")
                fitted.append(result.metrics[metric])
                control.append(result.controls.get(metric, np.nan))
                chance.append(result.chance.get(metric, np.nan))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names) + 1), 3.2), dpi=100)
    x = np.arange(len(names))
    for offset, values, label, color in ((-0.27, fitted, "fitted", "#2b6cb0"), (0.0, control, "shuffled-T control", "#a0aec0"), (0.27, chance, "chance", "#e2e8f0")):
        ax.bar(x + offset, np.nan_to_num(values), width=0.27, label=label, color=color, edgecolor="#4a5568", linewidth=0.5)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("score")
    ax.legend(fontsize=7, frameon=False, loc="upper center", ncol=3)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path


def eval_result_yaml(result: BenchmarkResult, date: str, source_url: str = SOURCE_URL) -> str:
    """The ``.eval_results/*.yaml`` text for one benchmark (huggingface_hub's helper when available)."""
    entries = []
    for row in result.metric_rows():
        if row["control"] is None:
            continue
        notes = f"{result.benchmark} {row['name']}; control {row['control']}; held-out {result.provenance.heldout_fingerprint[:12]}; config {result.config_hash[:12]}"
        entries.append({"dataset_id": f"atlas-align/{result.name}", "task_id": f"{result.benchmark}/{row['name']}", "value": round(float(row["value"]), 6), "date": date, "source_name": "atlas-align", "source_url": source_url, "notes": notes})
    try:
        from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

        return _dump_yaml(eval_result_entries_to_yaml([EvalResultEntry(**e) for e in entries]))
    except ImportError:  # older huggingface_hub: write the same shape ourselves
        shaped = [
            {"dataset": {"id": e["dataset_id"], "task_id": e["task_id"]}, "value": e["value"], "date": e["date"],
             "source": {k: v for k, v in (("name", e["source_name"]), ("url", e["source_url"])) if v}, "notes": e["notes"]}
            for e in entries
        ]  # fmt: skip
        return _dump_yaml(shaped)


def _dump_yaml(data: Any) -> str:
    if isinstance(data, str):
        return data
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_eval_outputs(folder: Path, alignment: AtlasAlignment, results: dict[str, BenchmarkResult], *, repo_id: str | None = None, revision: str | None = None, plot: bool = True, skipped: dict[str, str] | None = None) -> list[Path]:
    """eval_results.json (merged; ``skipped`` records why a benchmark did not apply), metrics.png,
    .eval_results/*.yaml and README.md, each atomically."""
    from atlas_align.alignment.card import render_card

    folder = Path(folder)
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = folder / EVAL_RESULTS_FILENAME
    merged: dict[str, BenchmarkResult] = {}
    was_skipped: dict[str, str] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
            merged = {k: BenchmarkResult.model_validate(v) for k, v in previous.get("results", {}).items()}
            was_skipped = {str(k): str(v) for k, v in (previous.get("skipped") or {}).items()}
        except (ValueError, AttributeError) as exc:
            raise IntegrityError(f"{path} is not a valid eval-results file ({exc}); move it away and re-run.") from None
    merged.update(results)
    was_skipped = {k: v for k, v in {**was_skipped, **(skipped or {})}.items() if k not in merged}
    order = {name: i for i, name in enumerate(DEFAULT_BENCHMARKS)}
    merged = dict(sorted(merged.items(), key=lambda kv: (order.get(kv[1].name, len(order)), kv[0])))
    payload = {"format_version": EVAL_FORMAT_VERSION, "kind": "atlas-align/eval-results", "date": date, "results": {k: v.model_dump(mode="json") for k, v in merged.items()}}
    if was_skipped:
        payload["skipped"] = dict(sorted(was_skipped.items()))
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, allow_nan=True) + "\n")
    written = [path]
    if plot:
        written.append(plot_metrics(merged, folder / PLOT_FILENAME))
    yaml_dir = folder / EVAL_RESULTS_DIRNAME
    yaml_dir.mkdir(exist_ok=True)
    for result in merged.values():
        target = yaml_dir / f"{result.name}-v{result.version}.yaml"
        atomic_write_text(target, eval_result_yaml(result, date, f"https://huggingface.co/{repo_id}" if repo_id else SOURCE_URL))
        written.append(target)
    card = render_card(alignment.config, repo_id=repo_id, revision=revision, metrics=metric_rows(merged), plot=PLOT_FILENAME if plot else None)
    atomic_write_text(folder / CARD_FILENAME, str(card))
    written.append(folder / CARD_FILENAME)
    return written


def _local_artifact(artifact: str | Path, revision: str | None, out: str | Path | None) -> tuple[Path, str | None, str | None]:
    """(folder, repo_id, artifact revision): a local folder as is, a repo id copied into ``out``."""
    source = Path(str(artifact)).expanduser()
    if source.is_dir():
        return source, None, None
    from atlas_align.downloads import download_artifact_files

    files = download_artifact_files(str(artifact), revision=revision)
    folder = Path(out) if out else Path(str(artifact).replace("/", "--") + "-eval")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILENAME, WEIGHTS_FILENAME, LABELS_FILENAME):
        if name in files:
            shutil.copyfile(files[name], folder / name)
    snapshot = files[CONFIG_FILENAME].parent
    sha = snapshot.name if snapshot.parent.name == "snapshots" else revision
    return folder, str(artifact), sha


def evaluate(artifact: str | Path, benchmarks: Sequence[str] = DEFAULT_BENCHMARKS, *, samples: int = 1000, seed: int = 0, revision: str | None = None, out: str | Path | None = None, params: dict[str, dict[str, Any]] | None = None, atlas: str | None = None, subject_bundle=None, subject_space=None, atlas_space=None, heldout: Sequence[Sample] | None = None, plot: bool = True, log: Callable[[str], None] | None = None) -> EvalReport:
    """Evaluate an artifact folder or Hub repo on ``benchmarks`` and write the results into the folder.

    A repo id is downloaded (at ``revision``) into ``out`` first (default ``<org>--<name>-eval``).
    ``params`` maps a benchmark name to its settings, e.g. ``{"steering": {"concepts": ["noun.animal"]}}``.
    Benchmarks that do not apply (e.g. retrieval and steering on a raw-layer atlas, which has no
    labels) are skipped and listed in ``EvalReport.skipped`` with the reason; if none applies,
    :class:`NotApplicable` is raised. ``log`` receives progress lines (loading, each benchmark).
    """
    say = log or (lambda _message: None)
    folder, repo_id, artifact_revision = _local_artifact(artifact, revision, out)
    alignment = AtlasAlignment.from_pretrained(folder)
    keys = [benchmark_key(b) for b in benchmarks]  # fail on a typo before loading models
    cfg = alignment.config
    say(f"loading subject {cfg.subject.model_id} ({cfg.subject.hookpoint}) and atlas {cfg.atlas.atlas_id}; drawing {samples if heldout is None else len(heldout)} held-out texts ...")
    start = time.perf_counter()
    ctx = build_context(alignment, samples=samples, seed=seed, subject_bundle=subject_bundle, subject_space=subject_space, atlas_space=atlas_space, atlas=atlas, heldout=heldout, artifact_revision=artifact_revision)
    say(f"loaded in {time.perf_counter() - start:.1f}s: {len(ctx.heldout)} held-out texts")
    skipped: dict[str, str] = {}
    results = run_benchmarks(ctx, keys, params, log=log, skipped=skipped)
    if not results:
        raise NotApplicable("None of the requested benchmarks applies to this alignment: " + " ".join(f"{k}: {v}" for k, v in skipped.items()))
    files = write_eval_outputs(folder, alignment, results, repo_id=repo_id, revision=revision, plot=plot, skipped=skipped)
    return EvalReport(folder=folder, alignment=alignment, results=results, files=files, skipped=skipped)


def format_tables(results: dict[str, BenchmarkResult], skipped: dict[str, str] | None = None) -> str:
    """Plain-text tables: each metric beside its shuffled-T control and chance; the steering table; what was skipped and why."""
    lines = []
    for key, result in results.items():
        lines.append(f"{key}  ({result.provenance.n_heldout} input texts, fingerprint {result.provenance.heldout_fingerprint[:12]})")
        lines.append(f"  {'metric':<26}{'fitted':>10}{'shuffled-T':>12}{'chance':>10}")
        for name, value in result.metrics.items():
            control, chance = result.controls.get(name), result.chance.get(name)
            fmt = lambda v: f"{v:>10.4f}" if v is not None else f"{'':>10}"  # noqa: E731
            lines.append(f"  {name:<26}{fmt(value)}{fmt(control):>12}{fmt(chance)}")
        if result.table and "method" in result.table[0]:  # steering@3: methods side by side, per split and strength
            judges = sorted({k[3:] for row in result.table for k in row if k.startswith("p2_")})
            header = "".join(f"{'p2 ' + j:>12}" for j in judges)
            lines.append(f"  {'method':<10}{'split':<9}{'strength':>9}{'λ':>9}  {'AxBench':>8}{'concept':>8}{'instr.':>8}{'fluency':>8}{header}  example")
            for row in result.table:
                mark = "*" if row.get("chosen") else " "
                cells = "".join(f"{row.get('p2_' + j, float('nan')):>12.2f}" for j in judges)
                example = str(row.get("example", "")).replace("\n", " ")[:40]
                lines.append(
                    f"  {row['method']:<10}{row['split']:<9}{row['strength']:>8.3g}{mark}{row['lambda']:>9.1f}  {row['axbench']:>8.3f}"
                    f"{row['concept_rating']:>8.2f}{row['instruction_rating']:>8.2f}{row['fluency_rating']:>8.2f}{cells}  {example!r}"
                )
            lines.append("  (* = the strength chosen on the tuning split; metrics above are the held-out split at it)")
        elif result.table:
            judges = sorted({k[3:] for row in result.table for k in row if k.startswith("p2_") and not k.endswith("_control")})
            header = "".join(f"{'p2 ' + j:>14}{'(ctrl)':>8}" for j in judges)
            lines.append(f"  {'concept':<20}{'λ':>6}{'|λ|':>9}{header}{'fluent':>8}  example")
            for row in result.table:
                cells = "".join(f"{row.get('p2_' + j, float('nan')):>14.2f}{row.get('p2_' + j + '_control', float('nan')):>8.2f}" for j in judges)
                example = row["example"].replace("\n", " ")[:48]
                lines.append(f"  {row['concept']:<20}{row['strength']:>6g}{row['lambda']:>9.1f}{cells}{row['fluent']:>8.2f}  {example!r}")
        lines.append("")
    for key, reason in (skipped or {}).items():
        lines.append(f"{key}  skipped: {reason}")
    if skipped:
        lines.append("")
    return "\n".join(lines)
