"""The leaderboard's data model (leaderboard.json is this, serialised)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# Column key → (header, the metric path in an eval result "benchmark:metric").
METRIC_COLUMNS: dict[str, tuple[str, str]] = {
    "auroc": ("AUROC", "translation:auroc"),
    "ap": ("AP", "translation:ap"),
    "mrr": ("MRR", "retrieval:mrr"),
    "mpp": ("MPP", "retrieval:mpp"),
    "pairs_mrr": ("Pairs MRR", "pairs:mrr"),
    "steering": ("Steering", "steering:axbench_atlas"),
    "faithfulness": ("Faithfulness", "steering:faithfulness_atlas"),
}

Status = Literal["verified", "self-reported", "corrected", "unevaluated", "refused"]


class LeaderboardRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo_id: str
    commit: str
    atlas_id: str
    atlas_revision: str | None = None
    subject_model: str
    layer: int | None = None
    depth: float | None = Field(None, description="relative depth layer/(n_layers-1), for comparing models of different depths")
    hookpoint: str
    method: str
    metrics: dict[str, float | None] = Field(default_factory=dict)
    self_reported: dict[str, float | None] = Field(default_factory=dict)
    benchmark_versions: dict[str, str] = Field(default_factory=dict)
    status: Status = "self-reported"
    notes: str = ""


class Leaderboard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    generated_at: str
    registry: str
    rows: list[LeaderboardRow]

    def boards(self) -> dict[str, list[LeaderboardRow]]:
        """Rows grouped by what makes them comparable: the atlas and the benchmark versions.

        A row lacking a benchmark (steering does not apply to an encoder) joins a group whose versions
        agree on every benchmark both have; a different version of any shared benchmark starts a new
        group. The page's ``groups()`` does the same.
        """
        merged: list[tuple[str, dict[str, str], list[LeaderboardRow]]] = []
        for row in self.rows:
            group = next((g for g in merged if g[0] == row.atlas_id and all(g[1].get(k, v) == v for k, v in row.benchmark_versions.items())), None)
            if group is None:
                group = (row.atlas_id, {}, [])
                merged.append(group)
            group[1].update(row.benchmark_versions)
            group[2].append(row)
        groups: dict[str, list[LeaderboardRow]] = {}
        for atlas_id, versions, rows in merged:
            label = ",".join(f"{k}@{v}" for k, v in sorted(versions.items()))
            rows.sort(key=lambda r: (-(r.metrics.get("auroc") or -1.0), r.repo_id))
            groups.setdefault(f"{atlas_id}" + (f" [{label}]" if label else ""), []).extend(rows)
        return dict(sorted(groups.items()))
