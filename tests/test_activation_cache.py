import torch

from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
from atlas_align.models.cache import ActivationCache, CachedSpace
from tests.tiny_models import tiny_llama, word_tokenizer

TEXTS = ["the dog runs", "a big red car eats bread", "cat"]


def test_cache_returns_the_same_numbers_without_running_the_model(tmp_path):
    model, tok = tiny_llama(), word_tokenizer("bos")
    extractor = ActivationExtractor(model, tok, resolve_hookpoint(model, 1))
    cache = ActivationCache(tmp_path)
    identity = {"model": "tiny", "hookpoint": "layers.1"}
    first = CachedSpace(extractor, identity, cache).pooled(TEXTS)
    calls = []
    model.model.layers[0].register_forward_hook(lambda *_: calls.append(1))
    again = CachedSpace(extractor, identity, cache).pooled(TEXTS)
    assert torch.equal(first, again) and not calls and (cache.hits, cache.misses) == (1, 1)
    torch.testing.assert_close(first, extractor.pooled(TEXTS))
    CachedSpace(extractor, identity, cache).pooled(TEXTS[:2])  # other texts: another entry
    CachedSpace(extractor, identity | {"hookpoint": "layers.2"}, cache).pooled(TEXTS)  # other identity: another entry
    assert cache.misses == 3 and len(list(tmp_path.glob("*.safetensors"))) == 3


def test_a_corrupt_entry_is_recomputed_not_trusted(tmp_path):
    model, tok = tiny_llama(), word_tokenizer("bos")
    extractor = ActivationExtractor(model, tok, resolve_hookpoint(model, 1))
    cache = ActivationCache(tmp_path)
    first = cache.pooled(extractor, {"m": 1}, TEXTS)
    (entry,) = tmp_path.glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:40])
    assert torch.equal(cache.pooled(extractor, {"m": 1}, TEXTS), first) and cache.misses == 2


class _Space:
    width = 2

    def __init__(self, rows):
        self.rows, self.calls = rows, 0

    def pooled_batches(self, texts, progress=False, total=None):
        self.calls += 1
        yield self.rows


def test_non_finite_activations_are_never_cached(tmp_path):
    """A NaN/inf pooled row is returned (the fit refuses it, naming the rows) but never stored for reuse."""
    cache = ActivationCache(tmp_path)
    bad = _Space(torch.tensor([[1.0, float("nan")], [float("inf"), 0.0]]))
    for _ in range(2):
        assert torch.isnan(cache.pooled(bad, {"m": "bad"}, ["a", "b"])).any()
    assert bad.calls == 2 and not list(tmp_path.glob("*.safetensors"))
    empty = _Space(torch.empty(0, 2))
    assert cache.pooled(empty, {"m": "empty"}, []).shape == (0, 2)
