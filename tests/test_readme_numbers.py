"""README numbers come from scripts' outputs: the generated sections must equal what the sources render."""

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_generated_sections_match_their_sources():
    script = runpy.run_path(str(REPO / "scripts" / "update_readme.py"))
    current = (REPO / "README.md").read_text(encoding="utf-8")
    assert script["render"](current) == current, "README.md is stale: run python scripts/update_readme.py"


def test_a_typed_number_is_caught(tmp_path):
    script = runpy.run_path(str(REPO / "scripts" / "update_readme.py"))
    current = (REPO / "README.md").read_text(encoding="utf-8")
    start = current.index("<!-- generated:board -->")
    tampered = current[: start + 25] + "| made-up | 1 | 1 | procrustes | 0.999 |\n" + current[start + 25 :]
    assert script["render"](tampered) != tampered
