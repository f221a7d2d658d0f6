"""A readable diff between two leaderboard.json files (what changed, per repo and metric)."""

from __future__ import annotations

import json
from pathlib import Path

from atlas_align.leaderboard.schema import METRIC_COLUMNS


def diff(before: dict, after: dict) -> list[str]:
    old = {r["repo_id"]: r for r in before.get("rows", [])}
    new = {r["repo_id"]: r for r in after.get("rows", [])}
    lines = [f"+ {repo} ({new[repo]['method']}, {new[repo]['status']})" for repo in sorted(new.keys() - old.keys())]
    lines += [f"- {repo}" for repo in sorted(old.keys() - new.keys())]
    for repo in sorted(old.keys() & new.keys()):
        a, b = old[repo], new[repo]
        changes = [f"{k}: {a['metrics'].get(k)} → {b['metrics'].get(k)}" for k in METRIC_COLUMNS if a["metrics"].get(k) != b["metrics"].get(k)]
        if a["commit"] != b["commit"]:
            changes.insert(0, f"commit {a['commit'][:10]} → {b['commit'][:10]}")
        if a["status"] != b["status"]:
            changes.append(f"status {a['status']} → {b['status']}")
        if changes:
            lines.append(f"~ {repo}: " + "; ".join(changes))
    return lines


def diff_files(before: str | Path, after: str | Path) -> list[str]:
    return diff(json.loads(Path(before).read_text()), json.loads(Path(after).read_text()))
