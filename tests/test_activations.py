import pytest
import torch

from atlas_align.errors import HookpointError
from atlas_align.models.activations import ActivationExtractor, PoolingConfig, masked_max_pool, pooling_mask, resolve_hookpoint
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
    ex = ActivationExtractor(model, tok, hook, batch_size=2, pooling=PoolingConfig(outlier_ratio=None))
    pooled = ex.pooled(TEXTS)
    for i, text in enumerate(TEXTS):
        enc = tok([text], return_special_tokens_mask=True, return_tensors="pt")
        special = enc.pop("special_tokens_mask").bool()[0]
        out = model(**enc, output_hidden_states=True).hidden_states[2][0]
        keep = ~special
        if factory is not tiny_bert and keep.sum() > 1:
            keep[0] = False  # a causal LM's first token is its attention sink (for the BOS tokenizer it is BOS anyway)
        expected = out[keep].max(0).values
        assert torch.allclose(pooled[i], expected, atol=1e-5), text
    legacy = ActivationExtractor(model, tok, hook, batch_size=2, pooling=PoolingConfig.legacy()).pooled(TEXTS)
    for i, text in enumerate(TEXTS):
        enc = tok([text], return_special_tokens_mask=True, return_tensors="pt")
        special = enc.pop("special_tokens_mask").bool()[0]
        out = model(**enc, output_hidden_states=True).hidden_states[2][0]
        assert torch.allclose(legacy[i], out[~special].max(0).values, atol=1e-5), text


def test_the_attention_sink_never_wins_the_max():
    """A planted sink (position 0 with a huge norm, as in real causal LMs) dominates a plain max, not ours."""
    attention = torch.tensor([[1, 1, 1, 1, 0]])
    special = torch.zeros_like(attention)
    acts = torch.tensor([[[500.0, -400.0], [1.0, 2.0], [3.0, -1.0], [2.0, 0.5], [900.0, 900.0]]])
    plain = masked_max_pool(acts, pooling_mask(attention, special, PoolingConfig.legacy(), causal=True))
    assert plain.tolist() == [[500.0, 2.0]]
    ours = masked_max_pool(acts, pooling_mask(attention, special, PoolingConfig(), causal=True))
    assert ours.tolist() == [[3.0, 2.0]]
    # an encoder keeps its first real token (its CLS is masked as a special token instead)
    assert masked_max_pool(acts, pooling_mask(attention, special, PoolingConfig(), causal=False)).tolist() == [[500.0, 2.0]]
    # the norm-outlier rule finds a sink anywhere: here the huge token sits at position 2
    acts2 = acts[:, [1, 3, 0, 2, 4]]
    rule = PoolingConfig(exclude_first="never", outlier_ratio=10.0)
    assert masked_max_pool(acts2, pooling_mask(attention, special, rule, causal=True, norms=acts2.norm(dim=-1))).tolist() == [[3.0, 2.0]]
    # left padding: the sink is the first non-pad position
    left = torch.tensor([[0, 1, 1, 1]])
    acts3 = torch.tensor([[[900.0], [500.0], [1.0], [3.0]]])
    assert masked_max_pool(acts3, pooling_mask(left, torch.zeros_like(left), PoolingConfig(), causal=True)).item() == 3.0
    # a one-token text keeps its token
    one = torch.tensor([[1, 0]])
    assert masked_max_pool(torch.tensor([[[7.0], [9.0]]]), pooling_mask(one, torch.zeros_like(one), PoolingConfig(), causal=True)).item() == 7.0


def test_special_tokens_typed_inside_the_text_are_masked():
    model, tok = tiny_llama(), word_tokenizer("bos")
    hook = resolve_hookpoint(model, 1)
    typed = f"the dog {tok.bos_token} runs"
    ours = ActivationExtractor(model, tok, hook).pooled([typed, "the dog runs"])
    enc = tok([typed], return_tensors="pt")
    ids = enc["input_ids"][0]
    out = model(**enc, output_hidden_states=True).hidden_states[2][0]
    keep = ids != tok.bos_token_id
    assert torch.allclose(ours[0], out[keep].max(0).values, atol=1e-5)
    assert (ids == tok.bos_token_id).sum() == 2  # the check above really removed a typed special


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


def test_layers_by_index_negative_index_or_relative_depth():
    from atlas_align.models.activations import layer_index

    assert [layer_index(x, 30) for x in (0, 20, -1, 0.0, 0.66, 1.0, 0.5, 2.0)] == [0, 20, 29, 0, 19, 29, 14, 2]
    assert resolve_hookpoint(tiny_llama(layers=3), 0.5).path == "layers.1"
    with pytest.raises(HookpointError, match="relative depth"):
        layer_index(1.5, 30)


def test_a_layer_sweep_equals_single_layer_runs_and_stops_after_the_deepest():
    from atlas_align.models.activations import LayerSweepExtractor

    model, tok = tiny_llama(layers=4), word_tokenizer("bos")
    hooks = [resolve_hookpoint(model, i) for i in (2, 0)]
    calls = []
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda *_a, i=i: calls.append(i))
    swept = LayerSweepExtractor(model, tok, hooks, batch_size=2).pooled(TEXTS)
    assert swept.shape == (len(TEXTS), 2, 32) and max(calls) == 2  # layer 3 never ran
    for j, hook in enumerate(hooks):
        torch.testing.assert_close(swept[:, j], ActivationExtractor(model, tok, hook, batch_size=2).pooled(TEXTS))
