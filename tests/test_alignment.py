import json

import pytest
import torch

from atlas_align import AtlasAlignment, CorpusConfig, FeatureLabels
from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.pipeline import AlignRequest, run_alignment
from atlas_align.atlas.labels import FeatureLabel
from atlas_align.atlas.spaces import RawModelSpace
from atlas_align.errors import ConfigError, IntegrityError, ShapeMismatchError
from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
from atlas_align.models.hooks import output_tensor
from atlas_align.models.steering import norm_preserving_add
from atlas_align.refs import AtlasRef, SubjectRef
from tests.tiny_models import WORDS, tiny_bert, tiny_llama, word_tokenizer


def make_alignment(d_s=32, d_c=12, seed=0) -> AtlasAlignment:
    g = torch.Generator().manual_seed(seed)
    u, _, vh = torch.linalg.svd(torch.randn(d_s, d_c, generator=g), full_matrices=False)
    config = AlignmentConfig(
        subject=SubjectRef(model_id="tiny/llama", hookpoint="layers.1", layer=1),
        atlas=AtlasRef(atlas_id="tiny/atlas"),
        method="procrustes",
        d_s=d_s,
        d_c=d_c,
    )
    labels = FeatureLabels([FeatureLabel(feature=i, label=lab, validated=i < 3) for i, lab in enumerate(["dogs", "cats", "cars", "dog breeds", "food"])])
    return AtlasAlignment(config, u @ vh, labels=labels)


def test_save_load_roundtrip_is_bit_exact(tmp_path):
    al = make_alignment()
    al.save_pretrained(tmp_path / "a")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["README.md", "atlas_labels.jsonl", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["format_version"] == 1 and len(cfg["weights_sha256"]) == 64
    back = AtlasAlignment.from_pretrained(tmp_path / "a")
    assert torch.equal(back.T, al.T) and back.config == al.config
    assert [x.label for x in back.labels] == [x.label for x in al.labels]


def test_tampered_weights_are_refused(tmp_path):
    make_alignment().save_pretrained(tmp_path / "a")
    weights = tmp_path / "a" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        AtlasAlignment.from_pretrained(tmp_path / "a")


def test_concept_direction_and_translation():
    al = make_alignment()
    s = al.concept_direction(2)
    assert torch.isclose(s.norm(), torch.tensor(1.0))
    # Semi-orthogonal T: translating a feature's direction back lands on that feature.
    assert al.translate_to_atlas(s).argmax().item() == 2
    combo = al.concept_direction({0: 1.0, 3: 1.0})
    assert torch.allclose(combo, al.concept_direction([0, 3]))
    assert torch.allclose(al.concept_direction("dogs"), al.concept_direction(0), atol=1e-6)
    with pytest.raises(ConfigError, match="out of range"):
        al.concept_direction(99)
    with pytest.raises(ConfigError, match="No atlas feature label"):
        al.concept_direction("zebras")
    with pytest.raises(ShapeMismatchError, match="d_s=32"):
        al.translate_to_atlas(torch.randn(5, 31))


def test_search_ranks_subject_neurons_and_dictionary_rows():
    al = make_alignment()
    res = al.search("dog", top_k=3)
    assert [f.label for f, _ in res.atlas_features][:2] == ["dogs", "dog breeds"]
    neurons = [i for i, _ in res.subject_features]
    assert neurons[0] == int(res.direction.argmax())
    dictionary = torch.randn(7, 32)
    dictionary[4] = res.direction * 3
    assert al.search("dog", subject_dictionary=dictionary).subject_features[0][0] == 4


def test_norm_preserving_add():
    a = torch.randn(2, 5, 32)
    s = torch.nn.functional.normalize(torch.randn(32), dim=0)
    out = norm_preserving_add(a, s, 8.0)
    assert torch.allclose(out.norm(dim=-1), a.norm(dim=-1), atol=1e-5)
    assert (torch.nn.functional.cosine_similarity(out, s.expand_as(out), dim=-1) > torch.nn.functional.cosine_similarity(a, s.expand_as(a), dim=-1)).all()


def test_steer_changes_generation_and_always_removes_hooks():
    model = tiny_llama()
    tok = word_tokenizer("bos")
    al = make_alignment()
    inputs = tok(["the dog"], return_tensors="pt")
    plain = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=0)
    seen = []
    # Registered before steering, this probe runs first and sees the layer's unsteered output; the
    # next layer's input is the steered one. Norm preservation: same per-token norms, new direction.
    model.model.layers[1].register_forward_hook(lambda _m, _a, out: seen.append(output_tensor(out).detach().clone()))
    after_steer = []
    probe = model.model.layers[2].register_forward_pre_hook(lambda _m, args: after_steer.append(args[0].detach().clone()))
    with al.steer(model, "cats", strength=50.0) as steering:
        model(**inputs)
        steered = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=0)
    probe.remove()
    torch.testing.assert_close(after_steer[0].norm(dim=-1), seen[0].norm(dim=-1), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(after_steer[0], seen[0], atol=1e-3)
    assert steering.direction.shape == (32,) and steering.coefficient == pytest.approx(50.0 * steering.unit)  # relative
    assert not torch.equal(plain, steered)
    assert len(model.model.layers[1]._forward_hooks) == 1  # only the probe hook is left
    after = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(plain, after)
    with pytest.raises(RuntimeError, match="boom"):
        with al.steer(model, 1, strength=1.0):
            raise RuntimeError("boom")
    assert len(model.model.layers[1]._forward_hooks) == 1
    assert not model._forward_pre_hooks  # the attention-mask probe is gone too


def _recorded_coefficients(monkeypatch) -> list[float]:
    """λ of every steering add (norm_preserving_add's strength; the direction is a unit vector)."""
    from atlas_align.models import steering

    seen: list[float] = []
    real = steering.norm_preserving_add
    monkeypatch.setattr(steering, "norm_preserving_add", lambda acts, direction, strength: seen.append(float(strength)) or real(acts, direction, strength))
    return seen


def test_strength_is_relative_to_the_median_token_norm_as_in_the_benchmark(monkeypatch):
    """One meaning of strength: al.steer(model, c, strength=s) adds the same vector norm as the steering benchmark at s."""
    from atlas_align.harness.benchmarks.base import BenchmarkContext
    from atlas_align.harness.benchmarks.steering import SteeringBenchmark
    from atlas_align.models.steering import median_token_norm

    model, tok = tiny_llama(), word_tokenizer("bos")
    labels = FeatureLabels([FeatureLabel(feature=0, label="animals (noun.animal)", validated=True)])
    al = make_alignment()
    al.labels = labels
    prompt, s = "the big dog eats the red apple", 0.3
    seen = _recorded_coefficients(monkeypatch)
    class Const:  # the judge does not matter here
        def prepare(self, ctx, concepts):
            pass

        def rate(self, texts, concept):
            return [0] * len(texts)

    bench = SteeringBenchmark(
        judge_instances={"const": Const()}, instructions=[prompt], heldout_instructions=[prompt], prompt_template="{instruction}", strengths=[s],
        max_new_tokens=2, methods=["atlas"], judges=["const"], instruction_judge="none", concepts=["noun.animal"],
    )  # fmt: skip
    ctx = BenchmarkContext(alignment=al, subject=None, atlas=None, heldout=[], model=model, tokenizer=tok, seed=0)
    result = bench.run(ctx)
    benchmark_lambda = seen[0]
    assert set(seen) == {benchmark_lambda}
    seen.clear()
    with al.steer(model, [0], strength=s) as steering, torch.inference_mode():
        model(**tok([prompt], return_tensors="pt"))
    unit = median_token_norm(model, tok, "layers.1", [prompt])
    assert seen == [steering.coefficient] and steering.unit == unit
    assert steering.coefficient == pytest.approx(benchmark_lambda, rel=1e-12) == pytest.approx(s * unit)
    assert result.table[-1]["lambda"] == pytest.approx(benchmark_lambda)
    seen.clear()
    with al.steer(model, [0], strength=s, absolute=True) as steering, torch.inference_mode():
        model(**tok([prompt], return_tensors="pt"))
    assert seen == [s] and steering.coefficient == s  # the explicit escape


def test_relative_unit_ignores_padding_and_each_first_token(monkeypatch):
    model, tok = tiny_llama(), word_tokenizer("bos")
    al = make_alignment()
    tok.padding_side = "left"
    batch = tok(["the dog", "the big red dog eats bread"], return_tensors="pt", padding=True)
    with al.steer(model, [0], strength=1.0) as steering, torch.inference_mode():
        model(**batch)
    from atlas_align.models.steering import median_token_norm

    expected = median_token_norm(model, tok, "layers.1", ["the dog", "the big red dog eats bread"])
    assert steering.unit == pytest.approx(expected, rel=1e-4)  # left padding changes the numerics a little, not the token set


def test_steer_refuses_a_model_of_another_width():
    with pytest.raises(ShapeMismatchError, match="hidden size 24"):
        with make_alignment().steer(tiny_llama(hidden=24), 0):
            pass


def test_run_alignment_end_to_end_on_tiny_models(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    g = torch.Generator().manual_seed(1)
    rows = [" ".join(WORDS[j] for j in torch.randint(len(WORDS), (8,), generator=g).tolist()) for _ in range(300)]
    corpus.write_text("\n".join(json.dumps({"text": r}) for r in rows))
    subject = tiny_llama()
    atlas_model = tiny_bert()
    atlas = RawModelSpace(ActivationExtractor(atlas_model, word_tokenizer("cls"), resolve_hookpoint(atlas_model, 1)), "tiny/bert")
    req = AlignRequest(subject="tiny/llama", layer=1, atlas="model:tiny/bert@1", corpus=CorpusConfig(source=str(corpus), heldout_fraction=0.2), samples=200, heldout_samples=50)
    result = run_alignment(req, progress=False, subject_bundle=(subject, word_tokenizer("bos"), "tiny/llama"), atlas_space=atlas)
    assert result.statistics.n == 200
    assert result.alignment.T.shape == (32, 16)
    assert result.report is not None and result.report.n >= 30
    assert result.report.top1 > result.report.chance_top1
    result.alignment.save_pretrained(tmp_path / "out")
    assert AtlasAlignment.from_pretrained(tmp_path / "out").config.corpus.n_samples == 200
