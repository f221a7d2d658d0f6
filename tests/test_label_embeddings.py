import pytest

from atlas_align.atlas.label_embeddings import EmbeddingIndex, LabelEmbedder
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.errors import ConfigError
from tests.tiny_models import tiny_bert, word_tokenizer

LABELS = FeatureLabels([FeatureLabel(feature=i, label=t, validated=i % 2 == 0) for i, t in enumerate(["dog cat horse", "red blue green", "apple bread cheese", "car boat train"])])


def test_index_ranks_the_identical_label_first_with_any_encoder():
    index = EmbeddingIndex(LABELS, LabelEmbedder(model=tiny_bert(), tokenizer=word_tokenizer("cls")))
    for item in LABELS:
        hits = index.search(item.label, top_k=2)
        assert hits[0][0].feature == item.feature and hits[0][1] == pytest.approx(1.0 + 1e-3 * item.validated, abs=1e-4)
    with pytest.raises(ConfigError, match="empty"):
        index.search("  ")


@pytest.mark.slow
def test_minilm_finds_labels_by_meaning_not_words():
    from atlas_align.atlas.atlas import Atlas

    index = EmbeddingIndex(Atlas.load("builtin").labels, LabelEmbedder("minilm"))
    hits = [item.label for item, _ in index.search("canine", top_k=5)]
    assert any(w in hits[0] for w in ("dog", "animal")) and any("animals (noun.animal)" == h for h in hits), hits
    assert not Atlas.load("builtin").labels.search("canine")  # keywords alone find nothing
