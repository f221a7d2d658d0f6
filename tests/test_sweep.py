"""Layer sweeps: k layers from one forward pass per batch, each layer's fit equal to a single-layer run."""

import json

import pytest
import torch
from click.testing import CliRunner

from atlas_align.alignment.model import AtlasAlignment
from atlas_align.alignment.pipeline import AlignRequest, run_alignment, run_alignment_sweep, sweep_hookpoints
from atlas_align.atlas.spaces import RawModelSpace
from atlas_align.cli.main import main
from atlas_align.corpus.sources import CorpusConfig
from atlas_align.errors import ConfigError
from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
from tests.tiny_models import WORDS, tiny_bert, tiny_llama, word_tokenizer


def write_corpus(path, n=240, seed=1):
    g = torch.Generator().manual_seed(seed)
    rows = [" ".join(WORDS[j] for j in torch.randint(len(WORDS), (8,), generator=g).tolist()) for _ in range(n)]
    path.write_text("\n".join(json.dumps({"text": r}) for r in rows))
    return path


def tiny_folders(tmp_path):
    """A saved tiny Llama subject (4 blocks) and a tiny BERT atlas model, loadable by path like any model."""
    subject, atlas = tmp_path / "subject", tmp_path / "atlas-model"
    tiny_llama(layers=4).save_pretrained(subject)
    word_tokenizer("bos").save_pretrained(subject)
    tiny_bert().save_pretrained(atlas)
    word_tokenizer("cls").save_pretrained(atlas)
    return subject, atlas


def _atlas():
    model = tiny_bert()
    return RawModelSpace(ActivationExtractor(model, word_tokenizer("cls"), resolve_hookpoint(model, 1)), "tiny/bert")


def test_sweep_hookpoints_resolve_dedupe_and_all():
    model = tiny_llama(layers=4)
    assert [h.layer for h in sweep_hookpoints(model, [0.0, -1, 1.0, 1])] == [0, 3, 1]  # 1.0 and -1 are both block 3
    assert [h.layer for h in sweep_hookpoints(model, "all")] == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        sweep_hookpoints(model, "most")


def test_sweep_equals_single_layer_runs_and_runs_the_subject_once_per_batch(tmp_path):
    corpus = CorpusConfig(source=str(write_corpus(tmp_path / "c.jsonl")), heldout_fraction=0.2)
    model, atlas = tiny_llama(layers=4), _atlas()
    req = AlignRequest(subject="tiny/llama", atlas="model:tiny/bert@1", corpus=corpus, samples=150, heldout_samples=40, batch_size=8)
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        sweep = run_alignment_sweep(req, [0.5, -1, 0], progress=False, subject_bundle=(model, word_tokenizer("bos"), "tiny/llama"), atlas_space=atlas)
    finally:
        handle.remove()
    assert [r.alignment.config.subject.layer for r in sweep] == [2, 3, 0]
    train_batches = sum(-(-chunk // 8) for chunk in (64, 64, 22))  # chunks of 64 texts, batches of 8
    assert len(calls) == train_batches + -(-sweep[0].report.n // 8)  # once per batch (+ held-out), not once per layer
    for result in sweep:
        layer = result.alignment.config.subject.layer
        single = run_alignment(req.model_copy(update={"layer": layer}), progress=False, subject_bundle=(model, word_tokenizer("bos"), "tiny/llama"), atlas_space=atlas)
        assert result.statistics.n == single.statistics.n == 150
        torch.testing.assert_close(result.alignment.T, single.alignment.T, rtol=1e-5, atol=1e-6)
        assert result.alignment.config.subject.hookpoint == single.alignment.config.subject.hookpoint == f"layers.{layer}"
        assert result.report.mrr == pytest.approx(single.report.mrr, abs=1e-6)


def test_cli_layers_writes_one_artifact_per_layer(tmp_path):
    subject, atlas_model = tiny_folders(tmp_path)
    corpus = write_corpus(tmp_path / "c.jsonl", n=160)
    out = tmp_path / "sweep"
    args = ["align", "--subject", str(subject), "--atlas", f"model:{atlas_model}@1", "--corpus", str(corpus),
            "--samples", "100", "--heldout-samples", "20", "--batch-size", "8", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--layers", "0.25,0.5,-1,3"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["layer-1", "layer-2", "layer-3"]  # 0.25 → 1, 0.5 → 2 (round half even), -1 and 3 → 3
    for layer in (1, 2, 3):
        al = AtlasAlignment.from_pretrained(out / f"layer-{layer}")
        assert al.config.subject.layer == layer and al.config.subject.n_layers == 4 and al.config.corpus.n_samples == 100
    assert "layer sweep over 3 block(s) of 4: 1, 2, 3" in result.output and "hidden_states[L+1]" in result.output
    assert "training texts used: 100" in result.output
    result = CliRunner().invoke(main, [*args, "--layers", "all", "--layer", "2"])
    assert result.exit_code == 2 and "does not combine with --layer" in result.output
    result = CliRunner().invoke(main, [*args, "--layers", "0.5,1.5"])
    assert result.exit_code == 2 and "[0, 1]" in result.output
