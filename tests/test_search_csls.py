"""`AtlasAlignment.search(scoring="csls")`: hub neurons are discounted, and the scores equal the brute-force CSLS."""

from __future__ import annotations

import pytest
import torch

from atlas_align.errors import ConfigError
from atlas_align.fit.csls import csls_scores
from atlas_align.fit.statistics import row_normalize
from tests.test_benchmarks import planted_problem


def _alignment():
    return planted_problem(seed=0).alignment


def test_csls_search_ranks_as_brute_force_csls_against_the_feature_directions():
    al = _alignment()
    feature, k = 3, 5
    got = al.search(feature, top_k=al.config.d_s, scoring="csls", csls_k=k)
    references = row_normalize(al._T_rows_normalized.T.double())  # every atlas feature's direction
    query = al.concept_direction(feature).double()[None]
    neurons = torch.eye(al.config.d_s, dtype=torch.float64)
    # brute force: CSLS(query, neuron) with the neuron's radius measured against the reference directions
    r_neuron = torch.stack([torch.topk(references @ neurons[y], k).values.mean() for y in range(al.config.d_s)])
    brute = 2 * (query @ neurons.T)[0] - r_neuron
    assert [i for i, _ in got.subject_features] == brute.argsort(descending=True).tolist()
    for i, value in got.subject_features:
        assert value == pytest.approx(float(brute[i]), abs=1e-5)
    # csls_scores over the pool (query + reference directions) ranks the neurons for the query alike
    pool = csls_scores(torch.cat([query, references]), neurons, k=k)
    assert pool.shape == (references.shape[0] + 1, al.config.d_s)


def test_a_hub_neuron_is_demoted_by_csls_but_not_by_cosine():
    al = _alignment()
    d_s, d_c = al._T_rows_normalized.shape
    M = 0.01 * torch.rand(d_s, d_c, generator=torch.Generator().manual_seed(1))
    M[0, :8] = 0.6  # neuron 0 is close to eight atlas features: a hub
    M[1, 0] = 0.55  # neuron 1 is specific to feature 0
    al._T_rows_normalized = M
    cosine = [i for i, _ in al.search(0, top_k=2).subject_features]
    csls = [i for i, _ in al.search(0, top_k=2, scoring="csls", csls_k=5).subject_features]
    assert cosine == [0, 1] and csls == [1, 0]


def test_csls_on_a_dictionary_and_bad_settings():
    al = _alignment()
    dictionary = torch.randn(40, al.config.d_s, generator=torch.Generator().manual_seed(0))
    result = al.search(2, top_k=5, subject_dictionary=dictionary, scoring="csls", csls_k=3)
    assert len(result.subject_features) == 5
    with pytest.raises(ConfigError, match="scoring must be 'cosine' or 'csls'"):
        al.search(2, scoring="CSLS!")
    with pytest.raises(ConfigError, match="csls_k must be a whole number"):
        al.search(2, scoring="csls", csls_k=0)
