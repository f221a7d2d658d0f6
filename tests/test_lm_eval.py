"""lm-eval integration: the `atlas-steered` model type on a tiny random model and a local jsonl task
(no hub download), and the exported `steered` .pt file read by lm-eval's own SteeredModel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is the optional 'eval' extra: pip install 'atlas-align[eval]'")

from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from atlas_align.alignment.artifact import AlignmentConfig  # noqa: E402
from atlas_align.alignment.model import AtlasAlignment  # noqa: E402
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels  # noqa: E402
from atlas_align.errors import ConfigError  # noqa: E402
from atlas_align.harness.lm_eval import AtlasSteeredLM, export_lm_eval_steering  # noqa: E402
from atlas_align.models.steering import REFERENCE_PROMPTS, median_token_norm  # noqa: E402
from atlas_align.refs import (  # noqa: E402
    AtlasRef,
    SubjectRef,
)
from tests.tiny_models import tiny_llama, word_tokenizer  # noqa: E402

TASK_DIR = Path(__file__).parent / "data" / "lm_eval_task"
TASKS = ["atlas_toy_mc", "atlas_toy_gen"]


@pytest.fixture
def task_manager(tmp_path) -> TaskManager:
    folder = tmp_path / "tasks"
    folder.mkdir()
    for template in TASK_DIR.glob("*.yaml.in"):
        text = template.read_text().replace("{DATA}", str(TASK_DIR / "atlas_toy.jsonl"))
        (folder / template.name.removesuffix(".in")).write_text(text)
    return TaskManager(include_path=str(folder), include_defaults=False)


@pytest.fixture
def artifact(tmp_path) -> Path:
    labels = FeatureLabels([FeatureLabel(feature=0, label="animals (noun.animal)", validated=True)])
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny", hookpoint="layers.1"), atlas=AtlasRef(atlas_id="toy"), method="random", d_s=32, d_c=4)
    T, _ = torch.linalg.qr(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)))
    AtlasAlignment(config, T, labels=labels).save_pretrained(tmp_path / "art")
    return tmp_path / "art"


def _responses(lm, task_manager) -> dict[str, list]:
    out = lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=task_manager, bootstrap_iters=0, log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    return {t: [s["resps"] for s in out["samples"][t]] for t in TASKS} | {"acc": out["results"]["atlas_toy_mc"]["acc,none"]}


def test_atlas_steered_is_registered_and_steers(artifact, task_manager):
    assert get_model("atlas-steered") is AtlasSteeredLM
    model, tok = tiny_llama(), word_tokenizer()
    plain = _responses(HFLM(pretrained=model, tokenizer=tok, batch_size=2), task_manager)
    zero = _responses(AtlasSteeredLM(pretrained=model, tokenizer=tok, batch_size=2, alignment=str(artifact), concept="noun.animal", strength=0.0), task_manager)
    strong_lm = AtlasSteeredLM(pretrained=model, tokenizer=tok, batch_size=2, alignment=str(artifact), concept="0", strength=64.0)
    strong = _responses(strong_lm, task_manager)
    assert zero == plain  # λ = 0 leaves the model untouched
    assert strong["atlas_toy_mc"] != plain["atlas_toy_mc"]  # log-likelihoods move (_model_call is steered)
    assert not model.model.layers[1]._forward_hooks  # every hook was removed
    # strength is relative (one unit per run, measured on REFERENCE_PROMPTS); absolute=true is the escape
    assert strong_lm.unit == median_token_norm(model, tok, "layers.1", REFERENCE_PROMPTS) and not strong_lm.absolute
    absolute = AtlasSteeredLM(pretrained=model, tokenizer=tok, batch_size=2, alignment=str(artifact), concept="0", strength=64.0, absolute="true")
    assert absolute.absolute and absolute.unit is None


def test_atlas_steered_from_model_args_string(artifact, task_manager, tmp_path):
    model, tok = tiny_llama(), word_tokenizer()
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    args = f"pretrained={tmp_path / 'tiny'},alignment={artifact},concept=0;1,strength=8,batch_size=2,device=cpu"
    out = lm_eval.simple_evaluate(model="atlas-steered", model_args=args, tasks=["atlas_toy_mc"], task_manager=task_manager, bootstrap_iters=0)
    assert 0.0 <= out["results"]["atlas_toy_mc"]["acc,none"] <= 1.0
    with pytest.raises(ConfigError, match="concept"):
        AtlasSteeredLM(pretrained=model, tokenizer=tok, alignment=str(artifact))


def test_exported_pt_runs_in_lm_evals_steered_model(artifact, task_manager, tmp_path):
    from lm_eval.models.hf_steered import SteeredModel

    model, tok = tiny_llama(), word_tokenizer()
    alignment = AtlasAlignment.from_pretrained(artifact)
    path = export_lm_eval_steering(alignment, "noun.animal", 64.0, tmp_path / "steer.pt", subject=(model, tok))
    vector = torch.load(path, weights_only=False)["layers.1"]["steering_vector"]  # our own file, just written
    unit = median_token_norm(model, tok, "layers.1", REFERENCE_PROMPTS)
    assert float(vector.norm()) == pytest.approx(64.0 * unit, rel=1e-5)  # relative strength, as in AtlasAlignment.steer
    absolute = export_lm_eval_steering(alignment, "noun.animal", 3.0, tmp_path / "abs.pt", absolute=True)
    assert float(torch.load(absolute, weights_only=False)["layers.1"]["steering_vector"].norm()) == pytest.approx(3.0, rel=1e-5)
    steered = _responses(SteeredModel(pretrained=model, tokenizer=tok, batch_size=2, steer_path=str(path)), task_manager)
    plain = _responses(HFLM(pretrained=model, tokenizer=tok, batch_size=2), task_manager)
    assert steered["atlas_toy_mc"] != plain["atlas_toy_mc"]


@pytest.mark.integration
def test_command_line_run_with_atlas_steered(artifact, task_manager, tmp_path):
    """The documented command line: lm-eval's own CLI with our model type registered."""
    import json
    import os
    import subprocess
    import sys

    model, tok = tiny_llama(), word_tokenizer()
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    include = Path(task_manager.include_path[0] if isinstance(task_manager.include_path, list) else task_manager.include_path)
    cmd = [sys.executable, "-m", "atlas_align.harness.lm_eval", "run", "--model", "atlas-steered",
           "--model_args", f"pretrained={tmp_path / 'tiny'},alignment={artifact},concept=0,strength=8", "--device", "cpu",
           "--tasks", "atlas_toy_mc", "--include_path", str(include), "--output_path", str(tmp_path / "out"), "--batch_size", "2"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = list((tmp_path / "out").rglob("results*.json"))
    assert results and "atlas_toy_mc" in json.loads(results[0].read_text())["results"]
