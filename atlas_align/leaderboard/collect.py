"""Collect alignment repos from a registry at pinned commit shas, verify their scores, build the board."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.errors import IntegrityError
from atlas_align.files import CONFIG_FILENAME, EVAL_RESULTS_FILENAME, atomic_write_text
from atlas_align.harness.benchmarks.metrics import NonFiniteScoreError
from atlas_align.leaderboard.schema import METRIC_COLUMNS, Leaderboard, LeaderboardRow
from atlas_align.leaderboard.verify import nonfinite_metrics

# A verifier re-runs the benchmarks on a downloaded snapshot folder and returns eval-results JSON.
Verifier = Callable[[Path], dict[str, Any]]
TOLERANCE = 1e-3


def extract_metrics(eval_results: dict[str, Any] | None) -> tuple[dict[str, float | None], dict[str, str]]:
    """Map an eval_results.json document to the board's metric columns and benchmark versions.

    A NaN/inf value maps to None (no number is shown or ranked); ``nonfinite_metrics`` names them.
    """
    metrics: dict[str, float | None] = {key: None for key in METRIC_COLUMNS}
    versions: dict[str, str] = {}
    if not eval_results:
        return metrics, versions
    results = eval_results.get("results", eval_results)
    entries = results.items() if isinstance(results, dict) else ((r.get("benchmark", ""), r) for r in results)
    by_name: dict[str, dict[str, Any]] = {}
    for full_name, entry in entries:
        name, _, version = str(full_name).partition("@")
        if isinstance(entry, dict):
            version = str(entry.get("version", entry.get("benchmark_version", version)) or version)
            by_name[name] = entry.get("metrics", entry)
            versions[name] = version or "?"
    for key, (_, path) in METRIC_COLUMNS.items():
        bench, metric = path.split(":")
        value = by_name.get(bench, {}).get(metric)
        metrics[key] = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return metrics, versions


def _differs(a: dict[str, float | None], b: dict[str, float | None]) -> bool:
    return any(a.get(k) is not None and b.get(k) is not None and abs(a[k] - b[k]) > TOLERANCE for k in METRIC_COLUMNS)


class VerificationCache:
    """Verified results keyed by (commit sha, benchmark versions): never recompute a verified commit."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, commit: str, versions: dict[str, str]) -> Path:
        tag = "-".join(f"{k}@{v}" for k, v in sorted(versions.items())) or "default"
        return self.root / commit / f"{tag}.json"

    def get(self, commit: str, versions: dict[str, str]) -> dict[str, Any] | None:
        path = self._path(commit, versions)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, commit: str, versions: dict[str, str], results: dict[str, Any]) -> None:
        path = self._path(commit, versions)
        atomic_write_text(path, json.dumps(results, sort_keys=True))


def collect(
    api,
    *,
    verify: bool = True,
    verifier: Verifier | None = None,
    cache_dir: str | Path = ".cache/atlas-align/leaderboard",
    progress: bool = True,
) -> Leaderboard:
    """List alignment repos (tag ``atlas-alignment``), read each at its current commit sha, verify, rank."""
    cache = VerificationCache(Path(cache_dir) / "verified")
    rows: list[LeaderboardRow] = []
    models = list(api.list_models(filter="atlas-alignment"))
    for model in tqdm(models, desc="leaderboard", unit="repo", disable=not progress):
        sha = api.model_info(model.id).sha
        config_path = api.hf_hub_download(model.id, CONFIG_FILENAME, revision=sha, cache_dir=str(Path(cache_dir) / "hub"))
        config = AlignmentConfig.model_validate_json(Path(config_path).read_text())
        reported = _download_eval_results(api, model.id, sha, cache_dir)
        reported_metrics, versions = extract_metrics(reported)
        reported_bad = nonfinite_metrics(reported)
        row = LeaderboardRow(
            repo_id=model.id,
            commit=sha,
            atlas_id=config.atlas.atlas_id,
            atlas_revision=config.atlas.revision,
            subject_model=config.subject.model_id,
            layer=config.subject.layer,
            depth=config.subject.depth,
            hookpoint=config.subject.hookpoint,
            method=config.method,
            metrics=reported_metrics,
            self_reported=reported_metrics,
            benchmark_versions=versions,
            status="self-reported" if reported else "unevaluated",
            notes=f"non-finite self-reported {', '.join(reported_bad)} dropped" if reported_bad else "",
        )
        if verify:
            try:
                row = _verify(api, row, cache, verifier, cache_dir, reported_bad=reported_bad)
            except (IntegrityError, NonFiniteScoreError) as exc:  # the artifact itself is broken: show no number
                row = _refused(row, exc)
            except Exception as exc:  # one broken submission must not stop the nightly board
                row = row.model_copy(update={"notes": f"verification failed: {type(exc).__name__}: {str(exc)[:200]}"})
        rows.append(row)
    endpoint = getattr(api, "endpoint", None) or "https://huggingface.co"
    return Leaderboard(generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), registry=endpoint, rows=rows)


def _refused(row: LeaderboardRow, exc: Exception) -> LeaderboardRow:
    """A row whose artifact is broken (non-finite or all-zero T, non-finite scores): no metric is shown or ranked."""
    empty = {key: None for key in METRIC_COLUMNS}
    note = f"refused: {type(exc).__name__}: {str(exc)[:200]}"
    return row.model_copy(update={"metrics": empty, "status": "refused", "notes": note})


def _download_eval_results(api, repo_id: str, sha: str, cache_dir: str | Path) -> dict[str, Any] | None:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = api.hf_hub_download(repo_id, EVAL_RESULTS_FILENAME, revision=sha, cache_dir=str(Path(cache_dir) / "hub"))
    except EntryNotFoundError:
        return None
    return json.loads(Path(path).read_text())


def _verify(api, row: LeaderboardRow, cache: VerificationCache, verifier: Verifier | None, cache_dir: str | Path, *, reported_bad: list[str] = ()) -> LeaderboardRow:
    verified = cache.get(row.commit, row.benchmark_versions)
    if verified is None:
        if verifier is None:
            verifier = default_verifier
        folder = Path(api.snapshot_download(row.repo_id, revision=row.commit, cache_dir=str(Path(cache_dir) / "hub")))
        verified = verifier(folder)
        cache.put(row.commit, row.benchmark_versions, verified)
    bad = nonfinite_metrics(verified)  # whatever verifier (or cache) produced it, a NaN never verifies
    if bad:
        raise NonFiniteScoreError(f"recomputed metrics are not finite ({', '.join(bad)})")
    recomputed, versions = extract_metrics(verified)
    # A NaN/inf self-reported score was a wrong claim even if the recomputed one is fine.
    wrong_claim = any(path in {p for _, p in METRIC_COLUMNS.values()} for path in reported_bad)
    status = "corrected" if wrong_claim or _differs(recomputed, row.self_reported) else "verified"
    # Metrics the verifier does not recompute (steering) stay self-reported, and the note says so.
    metrics = {k: recomputed[k] if recomputed.get(k) is not None else row.self_reported.get(k) for k in METRIC_COLUMNS}
    kept = [k for k in METRIC_COLUMNS if recomputed.get(k) is None and row.self_reported.get(k) is not None]
    skipped = {str(k).partition("@")[0]: str(v) for k, v in (verified.get("skipped") or {}).items()} if isinstance(verified, dict) else {}
    notes = "; ".join(filter(None, [
        *(f"{name} n/a: {reason}" for name, reason in sorted(skipped.items()) if name == "steering" and metrics.get("steering") is None),
        "self-reported scores differ from the recomputed ones" if status == "corrected" else "",
        f"non-finite self-reported {', '.join(reported_bad)}" if reported_bad else "",
        f"{', '.join(kept)} self-reported" if kept else "",
    ]))
    return row.model_copy(update={"metrics": metrics, "benchmark_versions": {**row.benchmark_versions, **versions}, "status": status, "notes": notes})


def default_verifier(folder: Path) -> dict[str, Any]:
    """Re-run the standard benchmarks on a snapshot (fixed versions, fixed held-out split)."""
    from atlas_align.leaderboard.verify import verify_folder

    return verify_folder(folder)
