"""Span alignment across tokenizers (atlas_align.models.spans): property-style checks on tricky text.

hypothesis is not a dependency: a seeded generator builds texts from pieces that break naive
alignment (whitespace runs, punctuation, emoji with ZWJ/skin tones/variation selectors, combining
accents, CJK, RTL scripts, control and zero-width characters) and every property is checked on
every pair of tokenizers — the tiny test tokenizers always, MiniLM's WordPiece and SmolLM2's
byte-level BPE when they are available offline — with and without truncation.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from atlas_align.models.activations import resolve_hookpoint
from atlas_align.models.spans import (
    TokenStream,
    align_units,
    pool_units,
    token_activations,
    trim_span,
    unit_activations,
    word_units,
)
from tests.tiny_models import tiny_bert, tiny_gpt2, tiny_llama, word_tokenizer

PIECES = [
    "the", "dog", "Cat", "runs", "Café", "naïve", "e\u0301", "cafe\u0301s", "東京", "日本語です", "한국어", "ภาษาไทย", "שלום", "مرحبا",
    "😀", "👨\u200d👩\u200d👧", "👍🏽", "❤️", "🇫🇷", "don't", "U.S.A.", "...", "—", "«", "»", "(", ")", "3.14", "1,000", "a_b",
    "well-known", "ﬁne", "$5", "#tag", "@user", "x\u200by", "\u00ad", "\x00", "Ⅻ", "ǅ", "İstanbul", "straße", "<s>", "[CLS]",
]  # fmt: skip
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\n\n", " \u3000 ", "\u00a0", "\r\n", ""]


def random_text(rng: random.Random) -> str:
    n = rng.randint(0, 14)
    parts = [rng.choice(SPACES) if rng.random() < 0.3 else ""]
    for _ in range(n):
        parts += [rng.choice(PIECES), rng.choice(SPACES)]
    return "".join(parts)


TEXTS = [random_text(random.Random(seed)) for seed in range(120)] + ["", "   ", "dog", " dog ", "😀", "東", "...", "a" * 300]


def _real_tokenizers() -> dict:
    from transformers import AutoTokenizer

    from atlas_align.models.assets import resolve_model

    found = {}
    try:
        found["minilm"] = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    except Exception:  # the packaged model is missing: only the tiny tokenizers are checked
        pass
    models = Path(os.environ.get("ATLAS_ALIGN_CACHE") or Path.home() / ".cache" / "atlas-align") / "models"
    # BPE (SmolLM2, Qwen2.5) and SentencePiece (Gemma-3) tokenizers, where a de-quantised cache exists
    for name in ("smollm2", "gemma3-270m", "qwen-coder-0.5b"):
        if (models / name / "tokenizer.json").is_file():  # never build the de-quantised cache from a test
            found[name] = AutoTokenizer.from_pretrained(models / name)
    return found


REAL = _real_tokenizers()  # at import: before conftest points ATLAS_ALIGN_CACHE at a per-test folder
TOKENIZERS = {"word-bos": word_tokenizer("bos"), "word-cls": word_tokenizer("cls"), "word-none": word_tokenizer("none"), **REAL}
PAIRS = [("word-bos", "word-cls"), ("word-none", "word-cls")] + [(a, b) for a in REAL for b in TOKENIZERS if a != b and b.startswith(("word-cls", *REAL))]


def stream_of(tokenizer, text: str, max_length: int | None = None) -> TokenStream:
    enc = tokenizer(text, truncation=max_length is not None, max_length=max_length, return_offsets_mapping=True, return_special_tokens_mask=True)
    spans = [None if sp else tuple(o) for o, sp in zip(enc["offset_mapping"], enc["special_tokens_mask"])]
    truncated = max_length is not None and len(tokenizer(text)["input_ids"]) > len(enc["input_ids"])
    limit = max((s[1] for s in spans if s is not None), default=0) if truncated else None
    return TokenStream(spans=spans, limit=limit)


def check_properties(text: str, streams: list[TokenStream]) -> None:
    al = align_units(text, streams)
    words = word_units(text)
    # Units: sorted, disjoint, non-empty, no whitespace at either edge.
    for (_, e), (s2, _) in zip(al.units, al.units[1:]):
        assert e <= s2
    for s, e in al.units:
        assert 0 <= s < e <= len(text)
        assert not text[s].isspace() and not text[e - 1].isspace(), (text, (s, e))
    # Units are unions of words: every word lies inside one unit or outside all of them.
    for ws, we in words:
        inside = [u for u in al.units if u[0] <= ws and we <= u[1]]
        overlapping = [u for u in al.units if u[0] < we and ws < u[1]]
        assert inside == overlapping and len(inside) <= 1, (text, (ws, we), al.units)
    for stream, assignment in zip(streams, al.assignments):
        assert len(assignment) == len(stream.spans)
        for sp, u in zip(stream.spans, assignment.tolist()):
            t = trim_span(text, sp)
            if u >= 0:  # an assigned token lies inside its unit ...
                s, e = al.units[u]
                assert t is not None and s <= t[0] and t[1] <= e, (text, sp, al.units[u])
            elif t is not None:  # ... and an unassigned one overlaps no shared unit
                assert not any(s < t[1] and t[0] < e for s, e in al.units if text[max(s, t[0]) : min(e, t[1])].strip()), (text, t, al.units)
        # Every unit has at least one token of every stream, and none past a truncation point.
        assert set(assignment.tolist()) >= set(range(len(al))), (text, al.units, assignment)
        if stream.limit is not None:
            assert all(e <= stream.limit for _, e in al.units)
    # Coverage: a non-space character every stream covers (not truncated away) is in a unit.
    if all(st.limit is None for st in streams):
        covered = [set() for _ in streams]
        for c, st in zip(covered, streams):
            for sp in st.spans:
                t = trim_span(text, sp)
                if t is not None:
                    c.update(range(*t))
        in_units = {c for s, e in al.units for c in range(s, e)}
        for ch in set.intersection(*covered):
            if not text[ch].isspace():
                assert ch in in_units, (text, ch, al.units)


def test_word_units_examples():
    text = "Hi  there, café 😀👨\u200d👩\u200d👧 東京!  e\u0301 don't..."
    assert [text[s:e] for s, e in word_units(text)] == [
        "Hi", "there", ",", "café", "😀", "👨\u200d👩\u200d👧", "東", "京", "!", "e\u0301", "don", "'", "t", ".", ".", ".",
    ]  # fmt: skip
    assert word_units("") == [] and word_units(" \n\t ") == []
    assert [(s, e) for s, e in word_units("👍🏽 ❤️")] == [(0, 2), (3, 5)]


def test_trim_span():
    assert trim_span(" dog", (0, 4)) == (1, 4)
    assert trim_span("  ", (0, 2)) is None
    assert trim_span("ab", (0, 9)) == (0, 2)
    assert trim_span("ab", None) is None


@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
@pytest.mark.parametrize("max_length", [None, 5, 12])
def test_span_alignment_properties(pair, max_length):
    a, b = (TOKENIZERS[name] for name in pair)
    for text in TEXTS:
        check_properties(text, [stream_of(a, text, max_length), stream_of(b, text, max_length)])


@pytest.mark.skipif(not {"minilm", "smollm2"} <= set(REAL), reason="MiniLM and SmolLM2 tokenizers not available offline")
def test_real_pair_merges_where_tokenizers_disagree():
    text = "I don't like 👨\u200d👩\u200d👧 in 東京... naïve e\u0301!"
    al = align_units(text, [stream_of(REAL["smollm2"], text), stream_of(REAL["minilm"], text)])
    words = al.words
    assert "'t" in words or "don't" in words  # BPE's "'t" merges the apostrophe and the t
    assert "👨\u200d👩\u200d👧" in words and "東" in words and "naïve" in words and "e\u0301" in words
    assert words[0] == "I" and words[-1] == "!"


def test_truncated_stream_limits_units():
    tok = word_tokenizer("cls")
    text = "the dog runs and the cat sleeps"
    full = align_units(text, [stream_of(tok, text)])
    cut = align_units(text, [stream_of(tok, text), stream_of(tok, text, max_length=5)])  # [CLS] + 3 words + [SEP]
    assert full.words == text.split()
    assert cut.words == ["the", "dog", "runs"]


def test_pool_units_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n, d, u = int(torch.randint(1, 12, (1,), generator=gen)), 3, int(torch.randint(1, 5, (1,), generator=gen))
        acts = torch.randn(n, d, generator=gen)
        assignment = torch.randint(-1, u, (n,), generator=gen)
        mx, mean = pool_units(acts, assignment, u, "max"), pool_units(acts, assignment, u, "mean")
        for k in range(u):
            rows = acts[assignment == k]
            if len(rows):
                torch.testing.assert_close(mx[k], rows.max(0).values)
                torch.testing.assert_close(mean[k], rows.mean(0))
            else:
                assert mx[k].abs().sum() == 0 and mean[k].abs().sum() == 0
    with pytest.raises(ValueError):
        pool_units(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(ValueError):
        pool_units(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 1, "median")  # type: ignore[arg-type]


def test_token_activations_batching_sink_prefix_and_units():
    texts = ["the dog runs", "a big red car the a small boat", "cat", "the dog runs"]
    gpt2, tok_none = tiny_gpt2(), word_tokenizer("none")
    hook = resolve_hookpoint(gpt2, 1)
    acts = token_activations(gpt2, tok_none, hook, texts, batch_size=3)
    # GPT-2's tokenizer adds no BOS: a sink token (<s>) is prepended and masked, so every word stays.
    assert acts[0].acts.shape[0] == 4 and acts[0].offsets[0] == (0, 0) and not acts[0].keep[0] and acts[0].keep[1:].all()
    single = token_activations(gpt2, tok_none, hook, ["the dog runs"])[0]
    torch.testing.assert_close(acts[3].acts, single.acts, atol=1e-5, rtol=1e-5)  # right padding changes nothing
    no_prefix = token_activations(gpt2, tok_none, hook, ["the dog runs"], sink_prefix=False)[0]
    assert no_prefix.acts.shape[0] == 3 and not no_prefix.keep[0]  # the first word is the sink, dropped
    # Llama's tokenizer adds <s> itself: nothing is prepended.
    llama, tok_bos = tiny_llama(), word_tokenizer("bos")
    la = token_activations(llama, tok_bos, resolve_hookpoint(llama, 1), texts)
    assert la[1].acts.shape[0] == 9 and not la[1].keep[0] and la[1].keep[1:].all()
    # Across models (causal LM vs BERT with [CLS]/[SEP]): units are the words; max-pool equals the tokens' max.
    bert, tok_cls = tiny_bert(), word_tokenizer("cls")
    ba = token_activations(bert, tok_cls, resolve_hookpoint(bert, 0), texts, token_transform=lambda x: x.relu())
    al, (pl, pb) = unit_activations([la[1], ba[1]], "max")
    assert al.words == texts[1].split() and pl.shape == (8, 32) and pb.shape == (8, 16)
    torch.testing.assert_close(pl[0], la[1].acts[1])
    assert (pb >= 0).all()
    _, (ml, _) = unit_activations([la[1], ba[1]], "mean")
    torch.testing.assert_close(ml, pl)  # one token per word: mean == max


def test_token_activations_truncation():
    llama, tok = tiny_llama(), word_tokenizer("bos")
    text = "the dog runs and the cat sleeps"
    (ta,) = token_activations(llama, tok, resolve_hookpoint(llama, 0), [text], max_length=4)
    assert ta.truncated and ta.acts.shape[0] == 4
    al = align_units(text, [ta.stream()])
    assert al.words == ["the", "dog", "runs"]
    gpt2, tok_none = tiny_gpt2(), word_tokenizer("none")
    (tb,) = token_activations(gpt2, tok_none, resolve_hookpoint(gpt2, 0), ["the dog runs"], max_length=3)
    assert tb.truncated and tb.acts.shape[0] == 3  # the prepended sink counts toward the limit
    assert align_units("the dog runs", [tb.stream()]).words == ["the", "dog"]
