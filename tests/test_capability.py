"""Capability cost of steering: the WordNet gloss → word lm-eval task (built offline from the packaged
corpus) and capability_cost on a tiny random Llama with a character-level tokenizer, so that every
answer word gets its own log-likelihood."""

from __future__ import annotations

import math

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is the optional 'eval' extra: pip install 'atlas-align[eval]'")

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from atlas_align.alignment.artifact import AlignmentConfig  # noqa: E402
from atlas_align.alignment.model import AtlasAlignment  # noqa: E402
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels  # noqa: E402
from atlas_align.corpus.builtin import load_default_corpus  # noqa: E402
from atlas_align.errors import ConfigError, ShapeMismatchError  # noqa: E402
from atlas_align.harness.capability import (  # noqa: E402
    TASK_NAME,
    build_capability_task,
    capability_cost,
    capability_cost_for_vector,
    evaluate_task,
    gloss_word_items,
)
from atlas_align.harness.lm_eval import AtlasSteeredLM  # noqa: E402
from atlas_align.models.steering import REFERENCE_PROMPTS, median_token_norm  # noqa: E402
from atlas_align.refs import AtlasRef, SubjectRef  # noqa: E402

POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character (printable ASCII and newline), '<s>' prepended."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>", "<unk>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    return fast


def char_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=112, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def alignment() -> AtlasAlignment:
    labels = FeatureLabels([FeatureLabel(feature=0, label="animals (noun.animal)", validated=True)])
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny", hookpoint="layers.1"), atlas=AtlasRef(atlas_id="toy"), method="random", d_s=32, d_c=4)
    T, _ = torch.linalg.qr(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)))
    return AtlasAlignment(config, T, labels=labels)


def test_items_are_well_formed_and_seeded():
    items = gloss_word_items(200, seed=0)
    assert len(items) == 200 and len({i["lemma"] for i in items}) == 200
    pos_of: dict[str, set[str]] = {}
    for row in load_default_corpus():
        if row["kind"] == "gloss":
            pos_of.setdefault(row["lemma"], set()).add(POS[row["synset"].rsplit("-", 1)[1]])
    for item in items:
        choices, label = item["choices"], item["label"]
        assert len(choices) == 4 and len(set(choices)) == 4 and 0 <= label < 4
        assert choices[label] == item["lemma"]  # exactly one gold: the synset's lemma, the others are other words
        assert item["lemma"].lower() not in item["definition"].lower()  # the gloss never gives its word away
        assert all(c.isalpha() and c.islower() for c in choices)
        assert all(item["pos"] in pos_of[c] for c in choices)  # distractors share the part of speech
    assert {i["label"] for i in items} == {0, 1, 2, 3}
    assert gloss_word_items(200, seed=0) == items  # deterministic
    assert gloss_word_items(20, seed=1) != items[:20]  # and the seed matters
    assert gloss_word_items(20, seed=0) == items[:20]  # a smaller task is a prefix of a larger one


def test_task_loads_through_lm_evals_task_manager_offline(tmp_path):
    import datasets

    assert datasets.config.HF_HUB_OFFLINE  # conftest: HF_HUB_OFFLINE=1, so `datasets` may not touch the network
    task = build_capability_task(tmp_path / "task", n_items=12, seed=3)
    manager = task.task_manager()
    assert TASK_NAME in manager.all_tasks
    if hasattr(manager, "load"):  # lm-eval >= 0.4.10
        task_obj = manager.load([TASK_NAME])["tasks"][TASK_NAME]
    else:
        task_obj = lm_eval.tasks.get_task_dict([TASK_NAME], manager)[TASK_NAME]
    docs = list(task_obj.test_docs())
    assert docs == [dict(item) for item in gloss_word_items(12, seed=3)]
    doc = docs[0]
    assert task_obj.doc_to_text(doc) == f"Definition: {doc['definition']}\nWord:"
    assert task_obj.doc_to_choice(doc) == doc["choices"] and task_obj.doc_to_target(doc) == doc["label"]
    data_mtime = task.data_file.stat().st_mtime_ns
    assert build_capability_task(tmp_path / "task", n_items=12, seed=3) == task
    assert task.data_file.stat().st_mtime_ns == data_mtime  # unchanged content is not rewritten


def test_capability_cost_end_to_end(alignment, tmp_path):
    model, tok = char_llama(), char_tokenizer()
    kwargs = dict(limit=8, n_items=20, task_folder=tmp_path / "task", batch_size=4)

    zero = capability_cost(alignment, (model, tok), "noun.animal", 0.0, **kwargs)
    assert zero.n_items == 8 and 0.0 <= zero.acc_unsteered <= 1.0 and 0.0 <= zero.acc_norm_unsteered <= 1.0
    assert zero.drop == 0.0 and zero.acc_steered == zero.acc_unsteered and zero.lost == zero.gained == 0
    assert zero.mean_abs_loglik_change == 0.0 and zero.gold_loglik_steered == zero.gold_loglik_unsteered

    unit = median_token_norm(model, tok, "layers.1", REFERENCE_PROMPTS)
    strong = capability_cost(alignment, (model, tok), "0", 64.0, **kwargs)
    assert strong.coefficient == pytest.approx(64.0 * unit) and strong.hookpoint == "layers.1" and not strong.absolute
    assert strong.drop == strong.acc_unsteered - strong.acc_steered and 0.0 <= strong.acc_steered <= 1.0
    assert strong.acc_unsteered == zero.acc_unsteered  # same items, same model
    assert strong.mean_abs_loglik_change > 0.1 and strong.gold_loglik_steered != strong.gold_loglik_unsteered  # the hook is live
    assert math.isfinite(strong.drop_stderr)
    assert not model.model.layers[1]._forward_hooks and not model._forward_pre_hooks  # every hook was removed

    # The steered run is exactly lm-eval's `atlas-steered` model at that strength...
    alignment.save_pretrained(tmp_path / "art")
    task = build_capability_task(tmp_path / "task", n_items=20)
    reference = evaluate_task(AtlasSteeredLM(pretrained=model, tokenizer=tok, batch_size=4, alignment=str(tmp_path / "art"), concept="0", strength=64.0), task, 8)
    assert reference["acc"] == strong.acc_steered
    assert sum(ll[g] for ll, g in zip(reference["logliks"], reference["gold"], strict=True)) / 8 == pytest.approx(strong.gold_loglik_steered, abs=1e-5)

    # ...and the vector route with the same direction (any norm: it is normalised) gives the same numbers.
    vector = capability_cost_for_vector(model, tok, "layers.1", 7.0 * alignment.concept_direction([0]), 64.0, **kwargs)
    assert vector.concept == "vector" and vector.coefficient == pytest.approx(strong.coefficient)
    assert vector.acc_steered == strong.acc_steered and vector.gold_loglik_steered == pytest.approx(strong.gold_loglik_steered, abs=1e-5)


def test_bad_input_fails_before_any_model_is_loaded(alignment, tmp_path):
    nowhere = str(tmp_path / "no-such-model")  # loading it would fail with another error
    with pytest.raises(ConfigError, match="noun.plant"):
        capability_cost(alignment, nowhere, "noun.plant", 0.25, limit=8)  # a category no validated feature has
    with pytest.raises(ConfigError, match="label matches"):
        capability_cost(alignment, nowhere, "zzqx", 0.25, limit=8)
    with pytest.raises(ConfigError, match="out of range"):
        capability_cost(alignment, nowhere, "99", 0.25, limit=8)
    for limit in (-1, 0, 2.5, 201):
        with pytest.raises(ConfigError, match="limit"):
            capability_cost(alignment, nowhere, "0", 0.25, limit=limit)
    with pytest.raises(ConfigError, match="finite"):
        capability_cost(alignment, nowhere, "0", float("nan"), limit=8)
    with pytest.raises(ConfigError, match="n_items"):
        gloss_word_items(0)
    model, tok = char_llama(), char_tokenizer()
    with pytest.raises(ShapeMismatchError, match="hidden size"):
        capability_cost_for_vector(model, tok, "layers.1", torch.ones(16), 0.25, limit=8)
    with pytest.raises(ConfigError, match="non-zero"):
        capability_cost_for_vector(model, tok, "layers.1", torch.zeros(32), 0.25, limit=8)
    with pytest.raises(ConfigError, match="limit"):
        capability_cost_for_vector(model, tok, "layers.1", torch.ones(32), 0.25, limit=-3)
