"""End to end on the registry server: push three alignments (two layers, two methods), build the
board with verification, check ordering and status, and catch a tampered self-reported score."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest

from atlas_align.alignment.pipeline import AlignRequest, run_alignment
from atlas_align.corpus.sources import CorpusConfig
from atlas_align.harness.evaluation import evaluate
from atlas_align.leaderboard.collect import collect
from atlas_align.leaderboard.render import render
from atlas_align.leaderboard.verify import verify_folder
from atlas_align.registry.hub import push_folder
from tests.registry_server_fixture import REPO_ROOT
from tests.tiny_models import write_tiny_pair

SAMPLES = 80
verifier = functools.partial(verify_folder, benchmarks=("translation",), samples=SAMPLES)


@pytest.fixture
def models_and_corpus(tmp_path):
    return write_tiny_pair(tmp_path)


@pytest.mark.integration
def test_board_orders_verifies_and_corrects(registry_server, hub_online, models_and_corpus, tmp_path):
    subject, atlas, corpus = models_and_corpus
    api = registry_server.api()
    genuine = {}
    for name, layer, method, tamper in (("l1-procrustes", 1, "procrustes", False), ("l2-procrustes", 2, "procrustes", False), ("l1-covariance", 1, "covariance", True)):
        req = AlignRequest(subject=str(subject), layer=layer, atlas=f"model:{atlas}@1", corpus=CorpusConfig(source=str(corpus), heldout_fraction=0.2), samples=400, method=method, heldout_samples=0)
        folder = tmp_path / name
        run_alignment(req, progress=False).alignment.save_pretrained(folder)
        evaluate(folder, ["translation"], samples=SAMPLES, plot=False)
        results = json.loads((folder / "eval_results.json").read_text())
        genuine[name] = results["results"]["translation@2"]["metrics"]["auroc"]
        if tamper:  # claim a score the alignment does not have
            results["results"]["translation@2"]["metrics"]["auroc"] = 0.99
            (folder / "eval_results.json").write_text(json.dumps(results))
        push_folder(api, folder, f"{registry_server.user}/board-{name}")

    # The card on the registry carries the metrics (model-index) and the tags the Hub filters on.
    card = registry_server.run_client(
        "import json; from huggingface_hub import ModelCard\n"
        f"c = ModelCard.load('{registry_server.user}/board-l1-procrustes')\n"
        "print(json.dumps({'tags': c.data.tags, 'lib': c.data.library_name, "
        "'metrics': {r.metric_type: r.metric_value for r in c.data.eval_results}, 'table': '| translation' in c.text}))",
        tmp_path / "card-home",
    )
    assert card["lib"] == "atlas-align" and "atlas-alignment" in card["tags"] and card["table"]
    assert card["metrics"]["auroc"] == pytest.approx(genuine["l1-procrustes"], abs=1e-6)

    cache = tmp_path / "lb-cache"
    board = collect(api, verify=True, verifier=verifier, cache_dir=cache, progress=False)
    rows = {r.repo_id.split("board-")[-1]: r for r in board.rows if "board-" in r.repo_id}
    assert set(rows) == set(genuine)
    assert rows["l1-covariance"].status == "corrected" and rows["l1-covariance"].self_reported["auroc"] == 0.99
    assert rows["l1-covariance"].metrics["auroc"] == pytest.approx(genuine["l1-covariance"], abs=1e-9)
    assert rows["l1-procrustes"].status == rows["l2-procrustes"].status == "verified"
    (board_rows,) = [v for k, v in board.boards().items() if "tiny-bert" in k]
    aurocs = [r.metrics["auroc"] for r in board_rows]
    assert aurocs == sorted(aurocs, reverse=True)

    paths = render(board, tmp_path / "leaderboard")
    assert "corrected" in paths["markdown"].read_text()

    # The CI script reuses the verification cache (keyed by commit sha), so it recomputes nothing
    # and needs no verifier of its own here; its diff names the three new rows.
    env = registry_server.client_env(tmp_path / "home", token=registry_server.token, LEADERBOARD_DIR=str(tmp_path / "lb-ci"), LEADERBOARD_CACHE=str(cache))
    env["PATH"] = os.environ["PATH"]
    env["PYTHON"] = sys.executable  # the venv's interpreter: nothing needs to be on PATH
    run = subprocess.run(["bash", str(REPO_ROOT / "ci" / "leaderboard.sh")], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert all(f"+ {registry_server.user}/board-{name}" in run.stdout for name in genuine), run.stdout
    ci_board = json.loads((tmp_path / "lb-ci" / "leaderboard.json").read_text())
    statuses = {r["repo_id"].split("board-")[-1]: r["status"] for r in ci_board["rows"] if "board-" in r["repo_id"]}
    assert statuses == {"l1-procrustes": "verified", "l2-procrustes": "verified", "l1-covariance": "corrected"}
