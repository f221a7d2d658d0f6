"""`atlas-align eval`: progress per benchmark; on a raw-layer atlas it runs what applies and says what it skipped."""

import json

import pytest
from click.testing import CliRunner

from atlas_align.cli.main import main
from atlas_align.files import EVAL_RESULTS_FILENAME
from tests.test_sweep import tiny_folders, write_corpus


@pytest.fixture
def raw_atlas_artifact(tmp_path):
    """An alignment of a tiny Llama onto a tiny BERT's raw layer (`model:FOLDER@1`: no SAE, no labels)."""
    subject, atlas_model = tiny_folders(tmp_path)
    corpus = write_corpus(tmp_path / "c.jsonl", n=300)
    out = tmp_path / "art"
    result = CliRunner().invoke(main, [
        "align", "--subject", str(subject), "--layer", "-1", "--atlas", f"model:{atlas_model}@1", "--corpus", str(corpus),
        "--heldout-fraction", "0.25", "--samples", "150", "--heldout-samples", "0", "--batch-size", "8", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_eval_on_a_raw_layer_atlas_runs_translation_and_pairs_and_skips_the_rest_with_reasons(raw_atlas_artifact):
    result = CliRunner().invoke(main, ["eval", str(raw_atlas_artifact), "--samples", "60"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "loading subject" in out and "[1/4] translation@2: running on" in out and "[1/4] translation@2: done in" in out
    assert "[2/4] pairs@1: done in" in out
    assert "[3/4] retrieval@2: skipped" in out and "raw-layer atlas (model:NAME@LAYER) has no labels" in out
    assert "[4/4] steering@" in out and "skipped" in out.split("[4/4] steering@")[1].splitlines()[0]
    assert "retrieval@2  skipped:" in out and "auroc" in out and "top1" in out  # the final table: what ran, then what was skipped
    written = json.loads((raw_atlas_artifact / EVAL_RESULTS_FILENAME).read_text())
    assert list(written["results"]) == ["translation@2", "pairs@1"]
    pairs = written["results"]["pairs@1"]
    assert pairs["metrics"]["n_texts"] >= 2 and 0.0 <= pairs["metrics"]["mrr"] <= 1.0
    assert pairs["chance"]["top1"] == pytest.approx(1.0 / pairs["metrics"]["n_texts"])


def test_nothing_applicable_is_a_one_line_error(raw_atlas_artifact):
    result = CliRunner().invoke(main, ["eval", str(raw_atlas_artifact), "--benchmarks", "retrieval", "--samples", "40"])
    assert result.exit_code == 2 and "None of the requested benchmarks applies" in result.output and "Traceback" not in result.output


def test_run_benchmarks_without_a_skip_list_raises_not_applicable(raw_atlas_artifact):
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.harness.benchmarks.base import NotApplicable
    from atlas_align.harness.evaluation import build_context, run_benchmarks

    ctx = build_context(AtlasAlignment.from_pretrained(raw_atlas_artifact), samples=40)
    with pytest.raises(NotApplicable, match="retrieval needs validated atlas features"):
        run_benchmarks(ctx, ["retrieval"])
    skipped: dict[str, str] = {}
    lines: list[str] = []
    assert run_benchmarks(ctx, ["retrieval"], skipped=skipped, log=lines.append) == {}
    assert list(skipped) == ["retrieval@2"] and "skipped" in lines[-1]


def test_eval_results_record_why_a_benchmark_was_skipped_and_the_board_notes_it(raw_atlas_artifact):
    from atlas_align.leaderboard.verify import verify_folder

    results = verify_folder(raw_atlas_artifact, benchmarks=("translation", "steering"), samples=40)
    assert list(results["results"]) == ["translation@2"]
    (key,) = results["skipped"]
    assert key.startswith("steering@") and "validated atlas features" in results["skipped"][key]


def test_steering_table_prints_methods_side_by_side_with_the_chosen_strength():
    from atlas_align.harness.benchmarks import get_benchmark
    from atlas_align.harness.evaluation import format_tables
    from tests.test_steering_axbench import LEXICON, TINY_INSTRUCTIONS, tiny_ctx

    settings = dict(instructions=TINY_INSTRUCTIONS[:4], concepts=["noun.animal"], max_new_tokens=3, edge_steps=2, judge_params={"lexicon": {"lexicon": LEXICON, "clear_hits": 1}})
    result = get_benchmark("steering", **settings).run(tiny_ctx())
    text = format_tables({result.benchmark: result})
    assert "AxBench" in text and "instr." in text and "p2 lexicon" in text
    for method in ("atlas", "diffmean", "control", "prompt", "unsteered"):
        assert any(line.strip().startswith(method) for line in text.splitlines()), method
    chosen = [line for line in text.splitlines() if line.strip().startswith("atlas") and "*" in line]
    assert len(chosen) == 2  # the chosen strength on both splits
    assert "axbench_atlas" in text and "instruction_atlas" in text and "fluency_atlas" in text


@pytest.mark.parametrize("spelling", ["pairs", "pairs@1"])
def test_evaluate_applies_settings_named_bare_or_versioned(raw_atlas_artifact, spelling):
    """evaluate() versions the benchmark names before running them; settings given under the bare name still apply."""
    from atlas_align.harness.evaluation import evaluate

    evaluate(raw_atlas_artifact, ["pairs"], samples=60, plot=False, params={spelling: {"max_texts": 7}})
    written = json.loads((raw_atlas_artifact / EVAL_RESULTS_FILENAME).read_text())
    assert written["results"]["pairs@1"]["config"]["max_texts"] == 7 and written["results"]["pairs@1"]["metrics"]["n_texts"] <= 7
