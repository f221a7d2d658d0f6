import json
from collections import Counter
from itertools import pairwise

import pytest

from atlas_align.corpus.sources import CorpusConfig, chunk_words, iter_samples, split_of
from atlas_align.errors import CorpusError


def test_chunking_is_at_word_boundaries():
    text = " ".join(f"w{i}" for i in range(10))
    assert chunk_words(text, 4) == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"]


def test_split_is_deterministic_and_near_the_fraction():
    texts = [f"sentence number {i}" for i in range(5000)]
    first = [split_of(t, 0.1) for t in texts]
    assert first == [split_of(t, 0.1) for t in texts]
    assert 0.08 < first.count("heldout") / len(texts) < 0.12
    assert split_of("x y", 0.1, "salt-a") in ("train", "heldout")


def test_local_jsonl_txt_and_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text("\n".join(json.dumps({"body": f"text {i} here", "category": "x"}) for i in range(20)))
    (tmp_path / "d" / "b.txt").write_text("para one line\nstill one\n\npara two\n")
    cfg = CorpusConfig(source=str(tmp_path / "d"), text_field="body", heldout_fraction=0.0)
    samples = list(iter_samples(cfg, "all"))
    assert len(samples) == 22  # 20 jsonl rows + 2 paragraphs of b.txt
    cfg_txt = CorpusConfig(source=str(tmp_path / "d" / "b.txt"))
    assert [s.text for s in iter_samples(cfg_txt, "all")] == ["para one line still one", "para two"]
    train = list(iter_samples(CorpusConfig(source=str(tmp_path / "d" / "a.jsonl"), text_field="body", heldout_fraction=0.5), "train"))
    held = list(iter_samples(CorpusConfig(source=str(tmp_path / "d" / "a.jsonl"), text_field="body", heldout_fraction=0.5), "heldout"))
    assert len(train) + len(held) == 20 and not {s.text for s in train} & {s.text for s in held}


def test_bad_corpus_inputs_are_clear(tmp_path):
    with pytest.raises(CorpusError, match="neither 'builtin'"):
        list(iter_samples(CorpusConfig(source=str(tmp_path / "missing.jsonl"))))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(CorpusError, match="bad.jsonl:2"):
        list(iter_samples(CorpusConfig(source=str(bad)), "all"))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"content": "hello there"}\n')
    with pytest.raises(CorpusError, match="--text-field"):
        list(iter_samples(CorpusConfig(source=str(wrong)), "all"))


def _sorted_corpus(tmp_path, categories=10, per_category=200):
    """A corpus stored sorted by category, like the built-in WordNet one."""
    path = tmp_path / "sorted.jsonl"
    rows = [{"text": f"{c}-word item {i} of category {c}", "category": f"cat{c}"} for c in range(categories) for i in range(per_category)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return CorpusConfig(source=str(path), heldout_fraction=0.2)


def test_uniform_sampling_of_a_sorted_corpus_sees_every_category(tmp_path):
    """Regression: `align` took the first N windows, so the demo's 2,000 texts were all adjectives."""
    cfg = _sorted_corpus(tmp_path)
    sample = list(iter_samples(cfg, "train", limit=300))
    assert len(sample) == 300
    counts = Counter(s.category for s in sample)
    assert len(counts) == 10 and max(counts.values()) < 60, counts  # ~30 each; first-N would be 200 + 100
    neighbours = sum(a.category == b.category for a, b in pairwise(sample)) / (len(sample) - 1)
    assert neighbours < 0.25, neighbours  # ~0.1 for a random order; 0.99 in corpus order
    sequential = list(iter_samples(cfg.model_copy(update={"sampling": "sequential"}), "train", limit=300))
    assert {s.category for s in sequential} == {"cat0", "cat1"}  # the old behaviour, still available


def test_uniform_sampling_is_seeded_nested_and_split_pure(tmp_path):
    cfg = _sorted_corpus(tmp_path)
    a = [s.text for s in iter_samples(cfg, "train", limit=100)]
    assert a == [s.text for s in iter_samples(cfg, "train", limit=100)]  # same seed, same sample, same order
    assert a == [s.text for s in iter_samples(cfg, "train", limit=200)][:100]  # a larger sample extends a smaller one
    other = [s.text for s in iter_samples(cfg.model_copy(update={"sample_seed": 1}), "train", limit=100)]
    assert len(set(a) & set(other)) < 30  # another seed, another sample (expected overlap 100·100/1600 ≈ 6)
    held = {s.text for s in iter_samples(cfg, "heldout", limit=10_000)}
    assert held and not held & {s.text for s in iter_samples(cfg, "train", limit=10_000)}
    assert len(list(iter_samples(cfg.model_copy(update={"scan_limit": 50}), "all", limit=1000))) == 50
    assert list(iter_samples(cfg, "train", limit=0)) == []


def test_text_unit_paragraph_line_window(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("one two three\nfour five\n\nsix seven eight nine\n")
    texts = lambda unit, **kw: [s.text for s in iter_samples(CorpusConfig(source=str(path), text_unit=unit, **kw), "all")]  # noqa: E731
    assert texts("paragraph") == ["one two three four five", "six seven eight nine"]  # the default, as before
    assert CorpusConfig().text_unit == "paragraph"
    assert texts("line") == ["one two three", "four five", "six seven eight nine"]
    assert texts("window", window_words=4) == ["one two three four", "five six seven eight", "nine"]
    # one sentence per line, no blank lines: 'paragraph' glues all 500 lines together; 'line' keeps them
    (tmp_path / "lines.txt").write_text("\n".join(f"sentence {i} is here" for i in range(500)))
    by_line = list(iter_samples(CorpusConfig(source=str(tmp_path / "lines.txt"), text_unit="line"), "all"))
    assert len(by_line) == 500
    assert len(list(iter_samples(CorpusConfig(source=str(tmp_path / "lines.txt")), "all"))) == 42  # 2000 words / 48
