"""Fitting on units (`align --pooling unit`): one row per shared word streamed into the same statistics."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from atlas_align.alignment.model import AtlasAlignment
from atlas_align.alignment.pipeline import AlignRequest, run_alignment, run_alignment_sweep
from atlas_align.atlas.spaces import RawModelSpace
from atlas_align.corpus.sources import CorpusConfig
from atlas_align.errors import ConfigError
from atlas_align.fit.units import UnitPairs
from atlas_align.harness.benchmarks.synthetic import planted_problem
from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
from atlas_align.models.spans import extractor_token_activations, unit_activations
from atlas_align.refs import PoolingConfig
from tests.test_alignment import make_alignment
from tests.tiny_models import WORDS, tiny_bert, tiny_llama, word_tokenizer

TEXTS = ["the dog runs", "a big red car the a small boat", "cat", "the dog runs"]


def _spaces():
    subject_model, atlas_model = tiny_llama(), tiny_bert()
    subject = ActivationExtractor(subject_model, word_tokenizer("bos"), resolve_hookpoint(subject_model, 1), pooling=PoolingConfig())
    atlas = RawModelSpace(ActivationExtractor(atlas_model, word_tokenizer("cls"), resolve_hookpoint(atlas_model, 1)), "tiny/bert")
    return subject_model, subject, atlas


@pytest.mark.parametrize("atlas_first", [True, False])
def test_unit_pairs_views_give_paired_rows_in_either_order(atlas_first):
    _, subject, atlas = _spaces()
    pairs = UnitPairs(subject, atlas, "mean")
    views = [pairs.atlas, pairs.subject] if atlas_first else [pairs.subject, pairs.atlas]
    first, second = (torch.cat(list(v.pooled_batches(TEXTS))) for v in views)
    a_rows, s_rows = (first, second) if atlas_first else (second, first)
    assert s_rows.shape == (15, 32) and a_rows.shape == (15, 16)  # one row per word
    assert pairs.n_texts == 4 and pairs.n_units == 15 and not pairs._kept["subject"] and not pairs._kept["atlas"]
    expected_s, expected_a = [], []
    for s, a in zip(extractor_token_activations(subject, TEXTS), extractor_token_activations(atlas.extractor, TEXTS)):
        _, (su, au) = unit_activations([s, a], "mean")
        expected_s.append(su)
        expected_a.append(au)
    torch.testing.assert_close(s_rows, torch.cat(expected_s))
    torch.testing.assert_close(a_rows, torch.cat(expected_a))
    assert pairs.atlas.width == 16 and pairs.atlas.ref.model_id == "tiny/bert"  # attributes pass through


def test_unit_pairs_need_models():
    problem = planted_problem(seed=0)
    with pytest.raises(ConfigError, match="per-token"):
        UnitPairs(problem.subject, problem.atlas)
    _, subject, atlas = _spaces()
    with pytest.raises(ConfigError, match="'max' or 'mean'"):
        UnitPairs(subject, atlas, "median")  # type: ignore[arg-type]


def _corpus(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    g = torch.Generator().manual_seed(1)
    rows = [" ".join(WORDS[j] for j in torch.randint(len(WORDS), (8,), generator=g).tolist()) for _ in range(300)]
    corpus.write_text("\n".join(json.dumps({"text": r}) for r in rows))
    return corpus


def test_run_alignment_on_units_records_the_pooling_and_loads(tmp_path):
    model, subject, atlas = _spaces()
    corpus = _corpus(tmp_path)
    base = dict(subject="tiny/llama", layer=1, atlas="model:tiny/bert@1", corpus=CorpusConfig(source=str(corpus), heldout_fraction=0.2), samples=100, heldout_samples=40)
    lines: list[str] = []
    result = run_alignment(AlignRequest(**base, unit_pooling="max"), progress=False, subject_bundle=(model, word_tokenizer("bos"), "tiny/llama"), atlas_space=atlas, log=lines.append)
    assert result.statistics.n == 800  # 100 texts × 8 words, one row each
    assert "training texts used: 100" in lines and "shared words (unit rows, max-pooled): 800" in lines
    assert result.alignment.config.unit_pooling == "max" and result.alignment.config.corpus.n_samples == 100
    assert result.report is not None and result.report.n == 40  # the held-out check stays per text (the usual report)
    assert result.report.matched_cosine > result.report.shuffled_cosine
    result.alignment.save_pretrained(tmp_path / "unit")
    assert json.loads((tmp_path / "unit" / "config.json").read_text())["unit_pooling"] == "max"
    assert AtlasAlignment.from_pretrained(tmp_path / "unit").config.unit_pooling == "max"
    # Sequence-level artifacts — also ones written before the field existed — load as unit_pooling=None.
    make_alignment().save_pretrained(tmp_path / "seq")
    cfg = json.loads((tmp_path / "seq" / "config.json").read_text())
    cfg.pop("unit_pooling")
    (tmp_path / "seq" / "config.json").write_text(json.dumps(cfg))
    assert AtlasAlignment.from_pretrained(tmp_path / "seq").config.unit_pooling is None
    # Refused combinations.
    with pytest.raises(ConfigError, match="checkpoint"):
        run_alignment(AlignRequest(**base, unit_pooling="mean"), progress=False, subject_bundle=(model, word_tokenizer("bos"), "tiny/llama"), atlas_space=atlas, checkpoint=tmp_path / "ck")
    with pytest.raises(ConfigError, match="one layer at a time"):
        run_alignment_sweep(AlignRequest(**base, unit_pooling="mean"), [0, 1], progress=False, subject_bundle=(model, word_tokenizer("bos"), "tiny/llama"), atlas_space=atlas)


def test_cli_pooling_option_reaches_the_request(monkeypatch, tmp_path):
    from atlas_align.alignment import pipeline
    from atlas_align.cli.main import main

    seen = {}

    def fake_run(req, *, checkpoint_every=50, **kwargs):  # the CLI reads this default from the signature
        seen["req"] = req
        raise ConfigError("stop here")

    monkeypatch.setattr(pipeline, "run_alignment", fake_run)
    for option, expected in (("unit", "max"), ("unit-mean", "mean"), ("sequence", None)):
        result = CliRunner().invoke(main, ["align", "--pooling", option, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and "stop here" in result.output
        assert seen["req"].unit_pooling == expected
