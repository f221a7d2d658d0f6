import pytest
import torch

from atlas_align.errors import HookpointError
from atlas_align.models.activations import ActivationExtractor, masked_max_pool, resolve_hookpoint
from tests.tiny_models import tiny_bert, tiny_gpt2, tiny_llama, word_tokenizer

TEXTS = ["the dog runs", "a big red car eats bread", "cat", "the small green boat sleeps the train"]


@pytest.mark.parametrize(
    "factory, expected_resid, expected_mlp",
    [(tiny_llama, "layers.1", "layers.1.mlp"), (tiny_gpt2, "h.1", "h.1.mlp"), (tiny_bert, "encoder.layer.1", "encoder.layer.1.output.dense")],
)
def test_hookpoint_resolution(factory, expected_resid, expected_mlp):
    model = factory()
    assert resolve_hookpoint(model, 1).path == expected_resid
    assert resolve_hookpoint(model, 1, site="mlp").path == expected_mlp
    assert resolve_hookpoint(model, -1).layer == len(model.base_model.get_submodule(expected_resid.rsplit(".", 1)[0])) - 1


def test_bad_hookpoints_are_clear():
    model = tiny_llama()
    with pytest.raises(HookpointError, match="out of range.*3 layers"):
        resolve_hookpoint(model, 7)
    with pytest.raises(HookpointError, match="does not exist"):
        resolve_hookpoint(model, path="layers.99")


def test_forward_stops_at_hooked_layer():
    model = tiny_llama(layers=3)
    calls = []
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda *_a, i=i: calls.append(i))
    model.lm_head.register_forward_hook(lambda *_a: calls.append("head"))
    ex = ActivationExtractor(model, word_tokenizer("bos"), resolve_hookpoint(model, 0))
    ex.pooled(TEXTS)
    assert calls and set(calls) == {0}, f"later layers ran: {calls}"


@pytest.mark.parametrize("factory, kind", [(tiny_llama, "bos"), (tiny_gpt2, "none"), (tiny_bert, "cls")])
def test_pooling_matches_manual_max_over_real_tokens(factory, kind):
    model = factory()
    tok = word_tokenizer(kind)
    hook = resolve_hookpoint(model, 1)
    ex = ActivationExtractor(model, tok, hook, batch_size=2)
    pooled = ex.pooled(TEXTS)
    for i, text in enumerate(TEXTS):
        enc = tok([text], return_special_tokens_mask=True, return_tensors="pt")
        special = enc.pop("special_tokens_mask").bool()[0]
        out = model(**enc, output_hidden_states=True).hidden_states[2][0]
        expected = out[~special].max(0).values
        assert torch.allclose(pooled[i], expected, atol=1e-5), text


def test_padding_and_specials_never_win_the_max():
    acts = torch.tensor([[[100.0], [1.0], [2.0], [50.0]]])
    mask = torch.tensor([[False, True, True, False]])
    assert masked_max_pool(acts, mask).item() == 2.0
    assert masked_max_pool(acts, torch.zeros_like(mask)).item() == 0.0


def test_order_is_kept_under_length_bucketing_and_bf16():
    model = tiny_llama()
    tok = word_tokenizer("bos")
    hook = resolve_hookpoint(model, 2)
    ref = ActivationExtractor(model, tok, hook, batch_size=1).pooled(TEXTS)
    bucketed = ActivationExtractor(model, tok, hook, batch_size=3, bucket_batches=2).pooled(TEXTS * 3)
    assert torch.allclose(bucketed, ref.repeat(3, 1), atol=1e-5)
    bf16 = ActivationExtractor(model.to(torch.bfloat16), tok, hook, batch_size=2).pooled(TEXTS)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, ref, atol=0.1, rtol=0.05)


def test_token_transform_applies_before_pooling():
    model = tiny_llama()
    tok = word_tokenizer("bos")
    hook = resolve_hookpoint(model, 1)
    plain = ActivationExtractor(model, tok, hook).pooled(TEXTS)
    neg = ActivationExtractor(model, tok, hook, token_transform=lambda x: -x).pooled(TEXTS)
    assert not torch.allclose(plain, -neg)  # max(-x) = -min(x) differs from -max(x)
