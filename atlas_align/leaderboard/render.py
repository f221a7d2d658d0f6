"""Render a Leaderboard into leaderboard.json, LEADERBOARD.md and a static index.html (charts + a sortable table)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from atlas_align.files import atomic_write_text
from atlas_align.leaderboard.schema import METRIC_COLUMNS, Leaderboard, LeaderboardRow

JSON_NAME, MARKDOWN_NAME, HTML_NAME = "leaderboard.json", "LEADERBOARD.md", "index.html"




CONTROL_METHOD = "random_rotation"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def card_url(registry: str, repo_id: str) -> str | None:
    """The model card's page, ``{registry}/{repo_id}``, when the registry is a web address (huggingface.co: the model page)."""
    if not re.fullmatch(r"https?://\S+", registry or ""):
        return None
    return registry.rstrip("/") + "/" + "/".join(quote(part, safe="") for part in repo_id.split("/"))


def best_layers(rows: list[LeaderboardRow], metric: str = "auroc") -> list[tuple[LeaderboardRow, LeaderboardRow | None]]:
    """Per subject model, its best non-control row by ``metric`` and the control row at that layer (if any), best first.

    Rows without a value for ``metric`` (refused, unevaluated) are skipped; a model with none does not appear.
    """
    best: dict[str, LeaderboardRow] = {}
    for row in rows:
        value = row.metrics.get(metric)
        if row.method == CONTROL_METHOD or value is None:
            continue
        current = best.get(row.subject_model)
        if current is None or value > (current.metrics[metric] or 0.0):
            best[row.subject_model] = row
    out = []
    for row in best.values():
        controls = [
            r for r in rows
            if r.method == CONTROL_METHOD and r.subject_model == row.subject_model and r.layer == row.layer and r.hookpoint == row.hookpoint and r.metrics.get(metric) is not None
        ]
        out.append((row, max(controls, key=lambda r: r.metrics[metric]) if controls else None))
    return sorted(out, key=lambda pair: (-(pair[0].metrics[metric] or 0.0), pair[0].subject_model))


def _best_layer_table(rows: list[LeaderboardRow]) -> list[str]:
    pairs = best_layers(rows)
    if not pairs:
        return []
    lines = [
        "",
        f"Best layer per model (by AUROC; `{CONTROL_METHOD}` is the control, at the same layer):",
        "",
        "| Subject model | Layer | Depth | Method | AUROC | MRR | Control AUROC | Δ vs control |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, control in pairs:
        auroc = row.metrics.get("auroc")
        control_auroc = None if control is None else control.metrics.get("auroc")
        delta = "—" if auroc is None or control_auroc is None else f"{auroc - control_auroc:+.3f}"
        cells = [row.subject_model, "—" if row.layer is None else str(row.layer), _fmt(row.depth, 2), row.method, _fmt(auroc), _fmt(row.metrics.get("mrr")), _fmt(control_auroc), delta]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(board: Leaderboard) -> str:
    lines = [
        "# atlas-align leaderboard",
        "",
        f"{len(board.rows)} alignments from `{board.registry}`, built {board.generated_at} (schema v{board.schema_version}).",
        "Rows compare only within one atlas and one set of benchmark versions; sorted by AUROC.",
        "**verified** = recomputed by the leaderboard job; **corrected** = self-reported numbers were not reproduced; **refused** = a broken artifact, no number shown.",
        "Depth = layer / (n_layers − 1), comparable across models.",
    ]
    headers = ["Subject model", "Layer", "Depth", "Method", *(h for h, _ in METRIC_COLUMNS.values()), "Revision", "Status", "Repo"]
    for name, rows in board.boards().items():
        lines += ["", f"## Atlas: {name}", *_best_layer_table(rows), "", "All alignments:", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for r in rows:
            url = card_url(board.registry, r.repo_id)
            repo = f"[{r.repo_id}]({url})" if url else r.repo_id
            layer = "—" if r.layer is None else str(r.layer)
            cells = [r.subject_model, layer, _fmt(r.depth, 2), r.method, *(_fmt(r.metrics.get(k)) for k in METRIC_COLUMNS), f"`{r.commit[:10]}`", r.status, repo]
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
    atomic_write_text(paths["json"], json.dumps(board.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    atomic_write_text(paths["markdown"], to_markdown(board))
    atomic_write_text(paths["html"], to_html(board))
    return paths


def load(path: str | Path) -> Leaderboard:
    return Leaderboard.model_validate_json(Path(path).read_text(encoding="utf-8"))
