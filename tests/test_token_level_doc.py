"""docs/TOKEN_LEVEL.md is generated: it must equal scripts/measure_token_level.py's rendering of docs/token_level.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_token_level_doc_is_rendered_from_its_json():
    doc, data = REPO / "docs" / "TOKEN_LEVEL.md", REPO / "docs" / "token_level.json"
    if not (doc.is_file() and data.is_file()):
        pytest.skip("docs/TOKEN_LEVEL.md not generated in this checkout")
    spec = importlib.util.spec_from_file_location("measure_token_level", REPO / "scripts" / "measure_token_level.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doc.read_text(encoding="utf-8") == module.render(json.loads(data.read_text(encoding="utf-8")))
