"""Per-word explain: AtlasAlignment.explain, the `atlas-align explain` CLI, and its HTML view in headless Chromium."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch
from click.testing import CliRunner

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.cli.main import main
from atlas_align.errors import ConfigError
from atlas_align.models.activations import resolve_hookpoint
from atlas_align.models.hooks import forward_to
from atlas_align.refs import AtlasRef, PoolingConfig, SubjectRef
from tests.test_leaderboard_render import driver  # noqa: F401  (the module-scoped headless Chromium fixture)
from tests.tiny_models import tiny_llama, word_tokenizer

LABELS = ["dogs", "cats", "cars", "food", "colours", "unvalidated"]
TEXT = "the big dog eats red apple  bread, the cat sleeps"


def planted_alignment(model, tok) -> AtlasAlignment:
    """T's column f is the layer-1 direction of one word, so feature f should light up on that word."""
    hook = resolve_hookpoint(model, 1)
    words = ["dog", "cat", "car", "apple", "red", "boat"]
    enc = tok([f"the {w}" for w in words], return_tensors="pt")
    with torch.inference_mode():
        acts = forward_to(model, model.model.get_submodule(hook.path), enc, hook.path)[:, -1]
    acts = acts / acts.norm(dim=-1, keepdim=True)
    T = (acts - acts.mean(0)).T.contiguous()  # (d_s, 6)
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny/llama", hookpoint=hook.path, layer=1), atlas=AtlasRef(atlas_id="tiny/atlas"),
                             method="planted", d_s=T.shape[0], d_c=T.shape[1], pooling=PoolingConfig())  # fmt: skip
    labels = FeatureLabels([FeatureLabel(feature=i, label=lab, validated=i < 5) for i, lab in enumerate(LABELS)])
    return AtlasAlignment(config, T, labels=labels)


@pytest.fixture
def setup():
    model, tok = tiny_llama(), word_tokenizer("bos")
    return model, tok, planted_alignment(model, tok)


def test_explain_scores_are_the_translated_unit_max(setup):
    model, tok, al = setup
    ex = al.explain(model, tok, TEXT, top_k=3)
    assert [u.text for u in ex.units] == ["the", "big", "dog", "eats", "red", "apple", "bread", ",", "the", "cat", "sleeps"]
    assert all(TEXT[u.start : u.end] == u.text for u in ex.units)
    # One token per word here: a unit's scores are T applied to that token's activation.
    enc = tok(TEXT, return_tensors="pt")
    with torch.inference_mode():
        acts = forward_to(model, model.model.get_submodule("layers.1"), enc, "layers.1")[0]
    torch.testing.assert_close(ex.scores, al.translate_to_atlas(acts[1:]), atol=1e-5, rtol=1e-5)
    for u in ex.units:
        assert len(u.concepts) == 3 and [c.score for c in u.concepts] == sorted((c.score for c in u.concepts), reverse=True)
        assert all(c.feature < 5 for c in u.concepts)  # only validated labels are ranked by default
    # The planted directions localise: "dogs" is the top concept of "dog", "cats" of "cat".
    top = {u.text: u.concepts[0].label for u in ex.units}
    assert top["dog"] == "dogs" and top["cat"] == "cats" and top["red"] == "colours"
    assert int(torch.tensor(ex.concept_scores(0)).argmax()) == 2
    assert ex.top_concept() in range(5)
    table = ex.table()
    assert table.splitlines()[0].startswith("unit") and "dogs" in table and len(table.splitlines()) == 12
    every = al.explain(model, tok, TEXT, top_k=2, features="all", reduce="mean")
    assert len(every.concepts) == 6 and len(every.units[0].concepts) == 2
    assert al.explain(model, tok, "", top_k=2).units == []


def test_features_sharing_a_label_form_one_concept(setup):
    model, tok, al = setup
    al.labels = FeatureLabels([*al.labels, FeatureLabel(feature=5, label="dogs", validated=True)])
    ex = al.explain(model, tok, TEXT, top_k=3)
    dogs = ex.concepts[ex.concept_index("dogs")]
    assert dogs.features == [0, 5] and len(ex.concepts) == 5 and ex.concept_index(5) == ex.concept_index(0)
    torch.testing.assert_close(torch.tensor(ex.concept_scores(ex.concept_index("dogs"))), ex.scores[:, [0, 5]].mean(1))
    assert all(len({c.label for c in u.concepts}) == 3 for u in ex.units)  # distinct labels per word
    with pytest.raises(ConfigError):
        ex.concept_index("zebra")


def test_explain_cli_table_json_and_html(setup, tmp_path):
    model, tok, al = setup
    al.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "view" / "explain.html"
    args = ["explain", str(tmp_path / "a"), TEXT, "--subject", str(tmp_path / "tiny"), "--top-k", "2"]
    result = CliRunner().invoke(main, [*args, "--html", str(out), "--concept", "cats"])
    assert result.exit_code == 0, result.output
    assert "dogs" in result.output and "sleeps" in result.output and f"Wrote {out}" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.count('class="u"') == 11 and '<option value="1" selected>cats</option>' in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: no external resources
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["units"][2]["unit"] == "dog" and doc["units"][2]["concepts"][0]["label"] == "dogs"
    result = CliRunner().invoke(main, [*args, "--html", str(out), "--concept", "zebra"])
    assert result.exit_code == 2 and "zebra" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, [*args, "--html", str(out), "--concept", "99"])
    assert result.exit_code == 2 and "out of range" in result.output


def test_html_escapes_text_and_labels(setup):
    model, tok, al = setup
    ex = al.explain(model, tok, "the <b>dog</b> & </script> cat", top_k=2)
    ex.concepts[0].label = "<img src=x onerror=alert(1)>"
    for u in ex.units:
        for c in u.concepts:
            if c.features == ex.concepts[0].features:
                c.label = ex.concepts[0].label
    page = ex.to_html(0)
    assert "<img" not in page and "&lt;img" in page and "<b>dog" not in page and page.count("</script>") == 2


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _png_has_orange(data: bytes) -> bool:
    """True if some pixel is strongly orange (the highlight), decoding the PNG's IDAT without extra packages."""
    width, height = _png_size(data)
    bit_depth, color_type = data[24], data[25]
    assert bit_depth == 8 and color_type in (2, 6)
    pos, chunks = 8, b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(chunks)
    bpp = 3 if color_type == 2 else 4
    stride = width * bpp
    prev = bytearray(stride)
    i = 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            r, g, bl = line[x], line[x + 1], line[x + 2]
            if r > 230 and 120 < g < 190 and bl < 90:
                return True
        prev = line
    return False


def test_html_view_in_headless_chromium(setup, driver, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    model, tok, al = setup
    ex = al.explain(model, tok, TEXT, top_k=3)
    path = tmp_path / "explain.html"
    path.write_text(ex.to_html(0), encoding="utf-8")
    driver.get(path.as_uri())
    units = driver.find_elements(By.CSS_SELECTOR, "#text .u")
    assert [u.get_attribute("data-i") for u in units] == [str(i) for i in range(11)]
    alpha = lambda el: float((el.value_of_css_property("background-color").split(",") + ["0)"])[3].strip(" )") or 0)
    dog, cat = units[2], units[9]
    assert alpha(dog) == pytest.approx(0.85, abs=0.01)  # "dogs" is highlighted most on "dog"
    assert alpha(cat) < alpha(dog)
    assert "dogs" in driver.find_element(By.ID, "legend").text
    Select(driver.find_element(By.ID, "concept")).select_by_value("1")  # switch to "cats"
    assert alpha(cat) == pytest.approx(0.85, abs=0.01) and alpha(dog) < 0.85
    tip = dog.find_element(By.CSS_SELECTOR, ".tip")
    assert not tip.is_displayed()
    ActionChains(driver).move_to_element(dog).perform()
    assert tip.is_displayed() and "dogs" in tip.text
    shot = driver.get_screenshot_as_png()
    (tmp_path / "explain.png").write_bytes(shot)
    width, height = _png_size(shot)
    assert width >= 800 and height >= 600 and len(shot) > 10_000
    assert _png_has_orange(shot)
