"""A readable diff between two leaderboard.json files (what changed, per repo and metric)."""

from __future__ import annotations

import json
import sys
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


def main(argv: list[str] | None = None) -> int:
    before_path, after_path = (argv or sys.argv[1:])[:2]
    lines = diff(json.loads(Path(before_path).read_text()), json.loads(Path(after_path).read_text()))
    print("\n".join(lines) if lines else "no changes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
