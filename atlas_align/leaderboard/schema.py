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
        """Rows grouped by what makes them comparable: the atlas and the benchmark versions."""
        groups: dict[str, list[LeaderboardRow]] = {}
        for row in self.rows:
            versions = ",".join(f"{k}@{v}" for k, v in sorted(row.benchmark_versions.items()))
            key = f"{row.atlas_id}" + (f" [{versions}]" if versions else "")
            groups.setdefault(key, []).append(row)
        for rows in groups.values():
            rows.sort(key=lambda r: (-(r.metrics.get("auroc") or -1.0), r.repo_id))
        return dict(sorted(groups.items()))
