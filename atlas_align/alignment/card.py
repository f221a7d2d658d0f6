"""Model cards for alignment artifacts, rendered from the Jinja template in ``cards/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.refs import RAW_PREFIX, looks_like_repo_id

TEMPLATE_NAME = "alignment.md.j2"


def card_template() -> str:
    """The template text, found through package data so non-editable installs have it too."""
    try:
        return resources.files("atlas_align.cards").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    except ModuleNotFoundError:  # running from a source checkout that is not installed
        return (Path(__file__).resolve().parents[2] / "cards" / TEMPLATE_NAME).read_text(encoding="utf-8")


def model_name_for(config: AlignmentConfig) -> str:
    subject = config.subject.model_id.rsplit("/", 1)[-1]
    atlas = config.atlas.atlas_id.rsplit("/", 1)[-1].removeprefix(RAW_PREFIX)
    return f"atlas-align-{subject}-{config.subject.hookpoint}-to-{atlas}-{config.method}"


def card_tags(config: AlignmentConfig) -> list[str]:
    atlas_tag = "atlas:" + config.atlas.atlas_id.removeprefix(RAW_PREFIX)
    return ["atlas-alignment", "interpretability", atlas_tag, f"method:{config.method}"]


def eval_results_from(metrics: list[dict[str, Any]], dataset_name: str) -> list[EvalResult]:
    """``metrics`` rows: {benchmark, name, value, [control]} → model-index EvalResults."""
    return [
        EvalResult(
            task_type="atlas-alignment",
            task_name=m["benchmark"],
            dataset_type="atlas-align/" + m["benchmark"].split("@")[0],
            dataset_name=dataset_name,
            metric_type=m["name"],
            metric_name=m["name"],
            metric_value=float(m["value"]),
        )
        for m in metrics
    ]


def render_card(config: AlignmentConfig, *, repo_id: str | None = None, revision: str | None = None, metrics: list[dict[str, Any]] | None = None, plot: str | None = None) -> ModelCard:
    name = model_name_for(config)
    metrics = metrics or []
    datasets = [config.corpus.source] if config.corpus and looks_like_repo_id(config.corpus.source) else None
    card_data = ModelCardData(
        library_name="atlas-align",
        tags=card_tags(config),
        base_model=config.subject.model_id if "/" in config.subject.model_id else None,
        datasets=datasets,
        model_name=name,
        eval_results=eval_results_from(metrics, f"{config.atlas.atlas_id} held-out") if metrics else None,
        license="apache-2.0",
    )
    return ModelCard.from_template(
        card_data,
        template_str=card_template(),
        model_name=name,
        repo_id=repo_id or name,
        revision=revision,
        atlas_id=config.atlas.atlas_id,
        atlas_revision=config.atlas.revision,
        subject_model=config.subject.model_id,
        subject_url=f"https://huggingface.co/{config.subject.model_id}",
        subject_revision=config.subject.revision,
        hookpoint=config.subject.hookpoint,
        layer=config.subject.layer,
        site=config.subject.site,
        method=config.method,
        method_params=", ".join(f"{k}={v}" for k, v in config.method_params.items()),
        d_s=config.d_s,
        d_c=config.d_c,
        corpus_source=config.corpus.source if config.corpus else "unknown",
        n_samples=config.corpus.n_samples if config.corpus else "unknown",
        library_version=config.library_version,
        format_version=config.format_version,
        weights_sha256=config.weights_sha256,
        created_at=config.created_at,
        metrics=metrics,
        plot=plot,
    )
