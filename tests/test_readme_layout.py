"""README's Layout section names the package's real folders and modules, and every stage folder appears."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "atlas_align"


def _layout() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## Layout") :]


def test_every_package_folder_is_in_the_layout():
    layout = _layout()
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file() and p.name not in ("data",))
    missing = [f for f in folders if f"{f}/" not in layout]
    assert not missing, f"README Layout lacks {missing}"


def test_every_module_named_in_the_layout_exists():
    layout = _layout()
    for line in layout.splitlines():
        match = re.match(r"\s+(\w+)/\s+(.*)", line)
        if not match:
            continue
        folder, rest = PACKAGE / match.group(1), match.group(2)
        for name in re.findall(r"(\w+)(?:\.py|/)", rest):
            assert (folder / f"{name}.py").is_file() or (folder / name).is_dir(), f"README Layout names {match.group(1)}/{name}, which does not exist"
    (bottom,) = [line for line in layout.splitlines() if line.strip().startswith("errors.py")]
    names = re.findall(r"(\w+)\.py", bottom)
    assert len(names) >= 5 and all((PACKAGE / f"{name}.py").is_file() for name in names), names
