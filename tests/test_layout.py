"""The package's data flows one way: a stage may import only its own stage and the stages below it.

corpus → models → atlas → fit → alignment → harness → registry → leaderboard → cli, over a bottom
layer (errors, refs, files, downloads, plugins, data, cards) that imports nothing above it. Every
``import``/``from`` statement counts — also those inside functions and ``TYPE_CHECKING`` blocks —
and there are no exemptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atlas_align"
BOTTOM = ("errors", "refs", "files", "downloads", "plugins", "data", "cards")
STAGES = ("corpus", "models", "atlas", "fit", "alignment", "harness", "registry", "leaderboard", "cli")
# The package root only re-exports (lazily) the public API, so it sits above everything.
RANK = {name: 0 for name in BOTTOM} | {name: i + 1 for i, name in enumerate(STAGES)} | {"": len(STAGES) + 1}


def stage_of(module: str) -> str:
    """'atlas_align.fit.methods.base' → 'fit'; 'atlas_align' → ''."""
    parts = module.split(".")
    assert parts[0] == "atlas_align", module
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = (name or module_name(path)).split(".")
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "atlas_align"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = here if is_pkg else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "atlas_align":
                found.append((node.lineno, target))
    return found


def python_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_top_level_name_has_a_stage():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if (p.suffix == ".py" or p.is_dir()) and p.name not in ("__pycache__", "__init__.py")}
    unknown = names - set(RANK)
    assert not unknown, f"give these a stage in tests/test_layout.py: {sorted(unknown)}"


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_down(path):
    mine = stage_of(module_name(path))
    upward = [
        f"line {line}: {target} (stage {stage_of(target)!r} is above {mine!r})"
        for line, target in imported_modules(path)
        if RANK[stage_of(target)] > RANK[mine]
    ]
    assert not upward, "\n".join(upward)


def test_the_checker_catches_an_upward_import(tmp_path):
    """The test above must be able to fail: a fit module importing the registry is caught."""
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from atlas_align.registry import hub\n    from ..leaderboard import render\n", encoding="utf-8")
    targets = [t for _, t in imported_modules(fake, "atlas_align.fit.probe")]
    assert targets == ["atlas_align.registry", "atlas_align.leaderboard"]
    assert all(RANK[stage_of(t)] > RANK["fit"] for t in targets)


def test_every_subpackage_is_installed():
    """pyproject lists packages explicitly (cards/ maps into the package): a new folder must be listed."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {module_name(p) for p in PACKAGE.rglob("__init__.py") if "__pycache__" not in p.parts}
    assert on_disk - listed == set()
