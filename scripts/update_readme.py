"""Write the README's generated sections from the files that hold the measured numbers.

Every number in README.md comes from a script's output, never typed by hand:

- ``demo``        ← docs/demo.txt          (scripts/record_demo.py: what `atlas-align demo` printed)
- ``pooling``     ← docs/pooling.md        (scripts/measure_pooling.py)
- ``token_level`` ← docs/TOKEN_LEVEL.md    (scripts/measure_token_level.py)
- ``board``       ← leaderboard/leaderboard.json (scripts/build_demo_leaderboard.py, verified rows)
- ``steering``    ← docs/STEERING.md       (scripts/measure_steering.py)
- ``quality``     ← docs/QUALITY.md        (scripts/quality_study.py: its conclusion)

A section in README.md is the text between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``.

    python scripts/update_readme.py          # rewrite the sections
    python scripts/update_readme.py --check  # exit 1 if README.md disagrees with the sources (CI / tests)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CONTROL_METHOD = "random_rotation"


def demo_section(repo: Path = REPO) -> str:
    """The demo's held-out check and steered generations, as it printed them."""
    path = repo / "docs" / "demo.txt"
    if not path.is_file():
        return "_Not recorded yet: run `python scripts/record_demo.py`._"
    wanted = ("held-out", "unsteered", "λ=")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if any(w in line for w in wanted) and "prompt" not in line]
    return "```\n" + "\n".join(lines) + "\n```"


def pooling_section(repo: Path = REPO) -> str:
    path = repo / "docs" / "pooling.md"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else "_Not measured yet: run `python scripts/measure_pooling.py`._"


def _short(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _steering(value, row: dict) -> str:
    """A steering cell: the number, 'n/a' where the subject cannot generate (the row's notes say so), else '—'."""
    return "n/a" if value is None and "steering n/a" in row.get("notes", "") else _fmt(value)


def board_section(repo: Path = REPO) -> str:
    """Per subject model: its best layer (by held-out MRR, verified rows) and every method there, with the control."""
    board = json.loads((repo / "leaderboard" / "leaderboard.json").read_text(encoding="utf-8"))
    rows = [r for r in board["rows"] if r["status"] == "verified"]
    by_model: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_model[row["subject_model"]].append(row)
    lines = [
        f"From `leaderboard/leaderboard.json` ({len(rows)} verified rows, {len(by_model)} subject models; atlas "
        f"`{rows[0]['atlas_id'] if rows else '—'}`; benchmark versions "
        f"{', '.join(sorted({f'{k}@{v}' for r in rows for k, v in r['benchmark_versions'].items()})) or '—'}). "
        "Best layer per model by retrieval MRR; every method at that layer, and the random-rotation control.",
        "",
        "| subject model | layers on the board | best layer | method | AUROC | AP | MRR | MPP | pairs MRR | steering (AxBench) | FADE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, model_rows in sorted(by_model.items()):
        fitted = [r for r in model_rows if r["method"] != CONTROL_METHOD and r["metrics"].get("mrr") is not None]
        if not fitted:
            continue
        best = max(fitted, key=lambda r: r["metrics"]["mrr"])
        layers = sorted({r["layer"] for r in model_rows if r["layer"] is not None})
        at_best = sorted((r for r in model_rows if r["layer"] == best["layer"]), key=lambda r: (r["method"] == CONTROL_METHOD, -(r["metrics"].get("mrr") or 0)))
        for i, r in enumerate(at_best):
            m = r["metrics"]
            lines.append(
                f"| {_short(model) if i == 0 else ''} | {', '.join(map(str, layers)) if i == 0 else ''} | {best['layer'] if i == 0 else ''} | "
                f"{r['method']} | {_fmt(m.get('auroc'))} | {_fmt(m.get('ap'))} | {_fmt(m.get('mrr'))} | {_fmt(m.get('mpp'))} | {_fmt(m.get('pairs_mrr'))} | {_steering(m.get('steering'), r)} | {_steering(m.get('faithfulness'), r)} |"
            )
    return "\n".join(lines)


def token_level_section(repo: Path = REPO) -> str:
    """The per-word comparison table of docs/TOKEN_LEVEL.md (scripts/measure_token_level.py)."""
    path = repo / "docs" / "TOKEN_LEVEL.md"
    if not path.is_file():
        return "_Not measured yet: run `python scripts/measure_token_level.py`._"
    tables = _tables(path.read_text(encoding="utf-8"))
    return "\n".join(tables[-1]) if tables else "_No table in docs/TOKEN_LEVEL.md._"


def _best_per_model(rows: list[dict], metric: str) -> dict[str, dict]:
    """Subject model → its row with the highest ``metric`` (the first one on ties)."""
    best: dict[str, dict] = {}
    for r in rows:
        key = r["subject_model"]
        if key not in best or r["metrics"][metric] > best[key]["metrics"][metric]:
            best[key] = r
    return best


def findings_section(repo: Path = REPO) -> str:
    """Three generated sentences: best layer per model, best method, distance above the control."""
    board = json.loads((repo / "leaderboard" / "leaderboard.json").read_text(encoding="utf-8"))
    rows = [r for r in board["rows"] if r["status"] == "verified" and r["metrics"].get("mrr") is not None]
    fitted = [r for r in rows if r["method"] != CONTROL_METHOD]
    if not fitted:
        return "_No verified rows yet._"
    lines = []
    best_per_model = _best_per_model(fitted, "mrr")
    parts = [
        f"{_short(m)} at layer {r['layer']}" + (f" (depth {r['depth']:.2f})" if r.get("depth") is not None else "") + f", MRR {r['metrics']['mrr']:.3f}"
        for m, r in sorted(best_per_model.items(), key=lambda kv: -kv[1]["metrics"]["mrr"])
    ]
    lines.append("- **Best layer per model** (held-out retrieval MRR): " + "; ".join(parts) + ".")
    wins: dict[str, int] = defaultdict(int)
    cells: dict[tuple, dict] = {}
    for r in fitted:
        cell = (r["subject_model"], r["layer"])
        if cell not in cells or r["metrics"]["auroc"] > cells[cell]["metrics"]["auroc"]:
            cells[cell] = r
    for r in cells.values():
        wins[r["method"]] += 1
    ranking = ", ".join(f"{m} {n}" for m, n in sorted(wins.items(), key=lambda kv: -kv[1]))
    lines.append(f"- **Best method** (highest translation AUROC per model × layer, {len(cells)} cells): {ranking}.")
    margins = []
    for model, best in sorted(best_per_model.items()):
        control = [r for r in rows if r["subject_model"] == model and r["layer"] == best["layer"] and r["method"] == CONTROL_METHOD]
        if control:
            c = control[0]["metrics"]
            margins.append(f"{_short(model)} AUROC {best['metrics']['auroc']:.3f} vs {c['auroc']:.3f}, MRR {best['metrics']['mrr']:.3f} vs {c['mrr']:.3f}")
    if margins:
        lines.append("- **Above the random-rotation control** at each model's best layer: " + "; ".join(margins) + ".")
    best_steering = _best_per_model([r for r in fitted if r["metrics"].get("steering") is not None], "steering")
    if best_steering:
        parts = []
        for model, best in sorted(best_steering.items(), key=lambda kv: -kv[1]["metrics"]["steering"]):
            control = [r for r in rows if r["subject_model"] == model and r["layer"] == best["layer"] and r["method"] == CONTROL_METHOD and r["metrics"].get("steering") is not None]
            versus = f" (random rotation {control[0]['metrics']['steering']:.3f})" if control else ""
            parts.append(f"{_short(model)} {best['method']} at layer {best['layer']}: {best['metrics']['steering']:.3f}{versus}")
        lines.append("- **Best steering row per causal LM** (AxBench score 0–2, held-out instructions, half the layer's fluency edge): " + "; ".join(parts) + ". "
                     "Each board row is a small sample (2 concepts × 8 held-out instructions, 12 new tokens), where one generation moves the score "
                     "by about 0.1, so these rank nothing finely; `docs/STEERING.md` holds the larger side-by-side with DiffMean and prompting.")
    lines.append("- GGUF models (SmolLM2, Gemma-3, Qwen2.5) are de-quantised 4-bit weights: numbers for the bf16 originals will differ.")
    return "\n".join(lines)


def _tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def steering_section(repo: Path = REPO) -> str:
    """steering@3 side by side (atlas / DiffMean / prompting), judge agreement and the layer curve, from docs/STEERING.md."""
    path = repo / "docs" / "STEERING.md"
    if not path.is_file():
        return "_Not measured yet: run `python scripts/measure_steering.py`._"
    tables = _tables(path.read_text(encoding="utf-8"))
    parts = ["\n".join(t) for t in tables]
    curve = "\n\n![steering by layer](docs/steering_layers.png)" if (repo / "docs" / "steering_layers.png").is_file() else ""
    return "\n\n".join(parts) + curve


def quality_section(repo: Path = REPO) -> str:
    """The quality study's conclusion paragraph (docs/QUALITY.md)."""
    path = repo / "docs" / "QUALITY.md"
    if not path.is_file():
        return "_Not measured yet: run `python scripts/quality_study.py`._"
    text = path.read_text(encoding="utf-8")
    body = text.split("## Conclusion", 1)[1].strip().split("\n\n")[0] if "## Conclusion" in text else ""
    return body or "_docs/QUALITY.md has no conclusion._"


def retrieval_queries_section(repo: Path = REPO) -> str:
    """Held-out texts vs synthetic concept sequences (template, LLM), plain and centered: docs/RETRIEVAL_QUERIES.md's table and conclusion."""
    path = repo / "docs" / "RETRIEVAL_QUERIES.md"
    if not path.is_file():
        return "_Not measured yet: run `python scripts/compare_query_generators.py`._"
    text = path.read_text(encoding="utf-8")
    tables = _tables(text)
    conclusion = next((line for line in text.splitlines() if line.startswith("**Conclusion**")), "")
    return "\n\n".join(filter(None, ["\n".join(tables[0]) if tables else "", conclusion]))


def targets_section(repo: Path = REPO) -> str:
    """The default demo pair against issue 14's targets, the setup as filed beside today's (docs/targets.json)."""
    path = repo / "docs" / "targets.json"
    if not path.is_file():
        return "_Not measured yet: run `python scripts/measure_targets.py`._"
    data = json.loads(path.read_text(encoding="utf-8"))
    keys = data.get("order") or list(data["labels"])
    targets = data["targets"]
    subject = data["subject"]
    lines = [
        f"{_short(subject['model_id'])} block {subject['layer']}, {data['n_train']:,} shared texts (the demo's) unless the row says otherwise, scored on {data['heldout']['n']:,} held-out texts "
        "(the benchmarks' default sample and settings); each cell is fitted (shuffled-T control). Generated by `scripts/measure_targets.py`.",
        "",
        "| setup | shared texts | sample | pooling | atlas (validated features) | method | " + " | ".join(data["labels"][k] for k in keys) + " |",
        "|---" * (6 + len(keys)) + "|",
        "| **target (the paper's numbers)** | | | | | | " + " | ".join(f"≥ {targets[k]:.2f}" if k in targets else "" for k in keys) + " |",
    ]
    for row in data["rows"]:
        if not row.get("table", True):
            continue
        cells = []
        for k in keys:
            m = row["metrics"][k]
            text = "—" if m["value"] is None else f"{m['value']:.3f}" + (f" ({m['control']:.3f})" if m.get("control") is not None else "")
            cells.append(f"**{text}**" if k in targets and m["value"] is not None and m["value"] >= targets[k] else text)
        pooling = {"legacy": "sink kept (legacy)", "default": "sink dropped (default)"}.get(row["pooling"], row["pooling"])
        lines.append(f"| {row['name']} | {row.get('n', data['n_train']):,} | {row['sampling']} | {pooling} | `{row['atlas']}` ({row['atlas_validated']}) | {row['method']} | " + " | ".join(cells) + " |")
    if (repo / "docs" / "targets.png").is_file():
        lines += ["", "![demo pair vs shared texts](docs/targets.png)"]
    return "\n".join(lines)


def atlases_section(repo: Path = REPO) -> str:
    """The shipped atlases, the default first: width, validated features and categories (scripts/atlas_report.py's rows)."""
    import runpy

    rows = runpy.run_path(str(repo / "scripts" / "atlas_report.py"))["shipped_rows"]()
    lines = ["| name | default | model, layer | width | validated features | categories covered | largest category |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (not r["default"], r["atlas_id"])):
        lines.append(
            f"| `{r['atlas_id']}` | {'yes' if r['default'] else ''} | {r['model_id'].rsplit('/', 1)[-1]} `{r['hookpoint']}` | {r['width']:,} | {r['validated']} | "
            f"{r['categories']} / 45 | {r['max_category']} {r['max_share']:.1%} |"
        )
    return "\n".join(lines)


SECTIONS = {"retrieval_queries": retrieval_queries_section, "demo": demo_section, "pooling": pooling_section, "token_level": token_level_section, "findings": findings_section, "board": board_section, "steering": steering_section, "quality": quality_section, "targets": targets_section, "atlases": atlases_section}


def render(readme: str, repo: Path = REPO) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- generated:{name} --> section")
        body = make(repo)
        readme = pattern.sub(lambda m, body=body: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md is stale")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md's generated sections are stale: run python scripts/update_readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
