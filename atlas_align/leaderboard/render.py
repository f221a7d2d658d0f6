"""Render a Leaderboard into leaderboard.json, LEADERBOARD.md and a static, sortable index.html."""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from atlas_align.files import atomic_write_text
from atlas_align.leaderboard.schema import METRIC_COLUMNS, Leaderboard

JSON_NAME, MARKDOWN_NAME, HTML_NAME = "leaderboard.json", "LEADERBOARD.md", "index.html"


_write = atomic_write_text


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def to_markdown(board: Leaderboard) -> str:
    lines = [
        "# atlas-align leaderboard",
        "",
        f"{len(board.rows)} alignments from `{board.registry}`, built {board.generated_at} (schema v{board.schema_version}).",
        "Rows compare only within one atlas and one set of benchmark versions; sorted by AUROC.",
        "**verified** = recomputed by the leaderboard job; **corrected** = self-reported numbers were not reproduced.",
    ]
    headers = ["Subject model", "Layer", "Method", *(h for h, _ in METRIC_COLUMNS.values()), "Revision", "Verified", "Repo"]
    for name, rows in board.boards().items():
        lines += ["", f"## Atlas: {name}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for r in rows:
            cells = [r.subject_model, "" if r.layer is None else str(r.layer), r.method, *(_fmt(r.metrics.get(k)) for k in METRIC_COLUMNS), f"`{r.commit[:10]}`", r.status, r.repo_id]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_html(board: Leaderboard) -> str:
    template = resources.files("atlas_align.leaderboard").joinpath("page.html").read_text(encoding="utf-8")
    data = json.dumps(board.model_dump(mode="json"), sort_keys=True).replace("</", "<\\/")
    return template.replace("__DATA__", data)


def render(board: Leaderboard, out: str | Path) -> dict[str, Path]:
    """Write the three outputs atomically; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / JSON_NAME, "markdown": out / MARKDOWN_NAME, "html": out / HTML_NAME}
    _write(paths["json"], json.dumps(board.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    _write(paths["markdown"], to_markdown(board))
    _write(paths["html"], to_html(board))
    return paths


def load(path: str | Path) -> Leaderboard:
    return Leaderboard.model_validate_json(Path(path).read_text(encoding="utf-8"))
