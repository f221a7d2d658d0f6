"""The project stands alone: no code, test or doc points at the team's notes folder beside the checkout."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTES = ("../shared", "shared/ASSETS", "STYLE.md", "HUB_PROTOCOL.md", "ASSETS.md", "PAPER.md", "ECOSYSTEM.md")


def test_nothing_points_at_the_notes_folder():
    offenders = []
    for folder in ("atlas_align", "tests", "scripts", "bench", "ci", "cards", ".ci"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".md", ".sh", ".j2", ".html", ".yml", ".yaml", ""} and path != Path(__file__):
                text = path.read_text(encoding="utf-8", errors="ignore")
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in NOTES if n in text]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    offenders += [f"README.md: {n}" for n in NOTES if n in readme]
    assert not offenders, offenders
