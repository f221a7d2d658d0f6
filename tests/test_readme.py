"""The README's Python code runs as written, on tiny random models.

How the names are swapped (the only change made to the code): the quoted alias ``"smollm2"`` becomes
a folder holding a tiny random Llama and its tokenizer, and the block runs with the working
directory set to a folder where ``atlas-align-demo`` is a tiny alignment fitted for that model
(hookpoint ``layers.1``, labels that include animals). Everything else — imports, calls, shapes,
the steering block — is executed exactly as printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from atlas_align import AtlasAlignment
from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.refs import AtlasRef, SubjectRef
from tests.tiny_models import tiny_llama, word_tokenizer

README = Path(__file__).resolve().parents[1] / "README.md"
DEMO_ALIASES = ("smollm2",)  # offline aliases the README may load; each becomes the tiny model folder


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture
def tiny_world(tmp_path, monkeypatch) -> Path:
    model, tok = tiny_llama(), word_tokenizer("bos")
    model.save_pretrained(tmp_path / "tiny-subject")
    tok.save_pretrained(tmp_path / "tiny-subject")
    words = ["animals (noun.animal)", "dogs", "cats", "food (noun.food)", "cars", "houses"]
    labels = FeatureLabels([FeatureLabel(feature=i, label=w, validated=i < 3) for i, w in enumerate(words)])
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny/llama", hookpoint="layers.1", layer=1), atlas=AtlasRef(atlas_id="tiny/atlas"), method="procrustes", d_s=32, d_c=len(words))
    T, _ = torch.linalg.qr(torch.randn(32, len(words), generator=torch.Generator().manual_seed(0)))
    AtlasAlignment(config, T, labels=labels).save_pretrained(tmp_path / "atlas-align-demo")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_a_python_snippet_that_uses_the_public_api():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    code = "\n".join(blocks)
    for name in ("extract_pooled", "load_model", "from_pretrained", "translate_to_atlas", "steer"):
        assert name in code


def test_readme_python_blocks_run_on_tiny_models(tiny_world, capsys):
    for block in python_blocks(README.read_text(encoding="utf-8")):
        code = block
        for alias in DEMO_ALIASES:
            code = code.replace(f'"{alias}"', repr(str(tiny_world / "tiny-subject")))
        namespace: dict = {"__name__": "readme"}
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102  (our own README, on purpose)
    out = capsys.readouterr().out
    assert "animals (noun.animal)" in out  # search found the label
    steering = namespace.get("steering")
    if steering is not None:  # the steering block ran and measured its relative unit
        assert steering.coefficient == pytest.approx(0.25 * steering.unit)
