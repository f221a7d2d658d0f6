"""A broken translation never becomes a number anyone trusts (issue 11, defect 1): a NaN/inf or
all-zero T is refused when saved and when loaded, and a leaderboard row whose T or metrics are
non-finite is refused, never "verified"."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from atlas_align.alignment.artifact import AlignmentConfig, read_weights, write_config
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.errors import IntegrityError
from atlas_align.files import CONFIG_FILENAME, EVAL_RESULTS_FILENAME, WEIGHTS_FILENAME
from atlas_align.harness.benchmarks.metrics import NonFiniteScoreError
from atlas_align.leaderboard.collect import collect, extract_metrics
from atlas_align.refs import AtlasRef, SubjectRef

D_S, D_C = 4, 6


def _config() -> AlignmentConfig:
    return AlignmentConfig(subject=SubjectRef(model_id="tiny", hookpoint="layers.0"), atlas=AtlasRef(atlas_id="tiny-atlas", kind="sae"), method="procrustes", d_s=D_S, d_c=D_C)


def _good_T() -> torch.Tensor:
    return torch.linalg.qr(torch.randn(D_C, D_S))[0].T.contiguous()


BROKEN = {
    "nan T": lambda: {"T": torch.full((D_S, D_C), float("nan"))},
    "one inf in T": lambda: {"T": _good_T().index_put_((torch.tensor([1]), torch.tensor([2])), torch.tensor(float("inf")))},
    "all-zero T": lambda: {"T": torch.zeros(D_S, D_C)},
    "nan shift": lambda: {"subject_shift": torch.tensor([0.0, float("nan"), 0.0, 0.0])},
    "zero scale": lambda: {"subject_scale": torch.tensor([1.0, 0.0, 1.0, 1.0])},
}


def _tensors(**override) -> dict[str, torch.Tensor]:
    return {"T": _good_T(), "subject_shift": torch.zeros(D_S), "subject_scale": torch.ones(D_S)} | override


@pytest.mark.parametrize("case", BROKEN)
def test_broken_weights_are_not_saved(tmp_path, case):
    tensors = _tensors(**BROKEN[case]())
    alignment = AtlasAlignment(_config(), tensors["T"], tensors["subject_shift"], tensors["subject_scale"])
    with pytest.raises(IntegrityError, match="Refusing to write .*(NaN/inf|all zeros|zeros)"):
        alignment.save_pretrained(tmp_path / "art")
    assert not (tmp_path / "art" / WEIGHTS_FILENAME).exists()


@pytest.mark.parametrize("case", BROKEN)
def test_broken_weights_are_not_loaded(tmp_path, case):
    """Weights written by something else (an old version, a hand-edited file): loading refuses them."""
    folder = tmp_path / "art"
    folder.mkdir()
    save_file(_tensors(**BROKEN[case]()), str(folder / WEIGHTS_FILENAME))
    write_config(folder, _config())  # no recorded sha256: only the content check stands in the way
    with pytest.raises(IntegrityError, match="Refusing to load .*(NaN/inf|all zeros|zeros)"):
        read_weights(folder / WEIGHTS_FILENAME, _config())
    with pytest.raises(IntegrityError):
        AtlasAlignment.from_pretrained(folder)


def test_good_weights_round_trip(tmp_path):
    tensors = _tensors()
    AtlasAlignment(_config(), tensors["T"]).save_pretrained(tmp_path / "art")
    back = AtlasAlignment.from_pretrained(tmp_path / "art")
    torch.testing.assert_close(back.T, tensors["T"])


# ------------------------------------------------------------------------------------ leaderboard


class FakeRegistry:
    """Just enough of HfApi for ``collect``: each repo is a local folder."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.endpoint = "http://fake"

    def list_models(self, filter: str):  # noqa: A002 (HfApi's name)
        return [SimpleNamespace(id=repo_id) for repo_id in self.repos]

    def model_info(self, repo_id: str):
        return SimpleNamespace(sha=f"{list(self.repos).index(repo_id):040d}")  # the verification cache keys on it

    def hf_hub_download(self, repo_id: str, filename: str, revision: str, cache_dir: str) -> str:
        path = self.repos[repo_id] / filename
        if not path.is_file():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(filename)
        return str(path)

    def snapshot_download(self, repo_id: str, revision: str, cache_dir: str) -> str:
        return str(self.repos[repo_id])


def _eval_results(auroc: float, mrr: float) -> dict:
    return {"results": {"translation@2": {"version": 2, "metrics": {"auroc": auroc, "ap": 0.5}}, "retrieval@2": {"version": 2, "metrics": {"mrr": mrr, "mpp": 0.5}}}}


def _repo(tmp_path: Path, name: str, reported: dict | None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / CONFIG_FILENAME).write_text(json.dumps(_config().model_dump(mode="json")))
    if reported is not None:
        (folder / EVAL_RESULTS_FILENAME).write_text(json.dumps(reported))  # json writes NaN as NaN
    return folder


def test_leaderboard_refuses_rows_with_a_broken_T_or_non_finite_metrics(tmp_path):
    repos = {
        "u/nan-T": _repo(tmp_path, "nan-T", _eval_results(0.9, 1.0)),  # claims a perfect MRR
        "u/nan-recomputed": _repo(tmp_path, "nan-recomputed", _eval_results(0.7, 0.4)),
        "u/nan-claimed": _repo(tmp_path, "nan-claimed", _eval_results(float("nan"), 0.4)),
        "u/fine": _repo(tmp_path, "fine", _eval_results(0.7, 0.4)),
    }

    def verifier(folder: Path) -> dict:
        name = folder.name
        if name == "nan-T":  # what loading a NaN T now does
            raise IntegrityError(f"Refusing to load {folder}/model.safetensors: tensor 'T' holds 24 NaN/inf values")
        if name == "nan-recomputed":
            return _eval_results(float("nan"), 0.4)
        return _eval_results(0.7, 0.4)

    board = collect(FakeRegistry(repos), verifier=verifier, cache_dir=tmp_path / "cache", progress=False)
    rows = {row.repo_id: row for row in board.rows}
    for refused in ("u/nan-T", "u/nan-recomputed"):
        row = rows[refused]
        assert row.status == "refused" and row.notes.startswith("refused:"), row
        assert all(value is None for value in row.metrics.values())  # no number shown or ranked
    assert "IntegrityError" in rows["u/nan-T"].notes
    assert "NonFiniteScoreError" in rows["u/nan-recomputed"].notes and "translation:auroc" in rows["u/nan-recomputed"].notes
    claimed = rows["u/nan-claimed"]
    assert claimed.status == "corrected" and "non-finite self-reported translation:auroc" in claimed.notes
    assert claimed.metrics["auroc"] == 0.7 and claimed.self_reported["auroc"] is None
    assert rows["u/fine"].status == "verified" and rows["u/fine"].metrics["mrr"] == 0.4


def test_extract_metrics_never_passes_on_a_nan():
    metrics, _ = extract_metrics(_eval_results(float("nan"), float("inf")))
    assert metrics["auroc"] is None and metrics["mrr"] is None and metrics["ap"] == 0.5


def test_verify_folder_refuses_non_finite_recomputed_metrics(tmp_path, monkeypatch):
    from atlas_align.harness import evaluation
    from atlas_align.leaderboard.verify import verify_folder

    def fake_evaluate(folder, benchmarks, **kw):
        (Path(folder) / EVAL_RESULTS_FILENAME).write_text(json.dumps(_eval_results(float("nan"), 0.4)))

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    with pytest.raises(NonFiniteScoreError, match="translation:auroc"):
        verify_folder(_repo(tmp_path, "x", None))
