"""The CLI: every command explains itself with an example; user mistakes give one line, exit 2."""

import click
import pytest
from click.testing import CliRunner

from atlas_align.cli.main import main
from tests.test_alignment import make_alignment


def _commands(group: click.Group, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize("path", sorted(_commands(main)), ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0 and "Example" in result.output, result.output


def test_bad_values_are_one_line_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["align", "--samples", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "samples" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["align", "--method", "procrustos", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "Did you mean 'procrustes'" in result.output
    result = runner.invoke(main, ["search", str(tmp_path), "dog"])
    assert result.exit_code == 2 and "not an alignment artifact" in result.output


def test_search_prints_labels_and_neurons(tmp_path):
    make_alignment().save_pretrained(tmp_path / "a")
    result = CliRunner().invoke(main, ["search", str(tmp_path / "a"), "dog", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "dogs" in result.output and "neuron" in result.output


def test_public_api_is_small_and_resolves():
    import atlas_align

    assert len(atlas_align.__all__) <= 15
    assert sorted(atlas_align.__all__) == sorted([*atlas_align._EXPORTS, "extract_pooled", "load_model"])
    for name in atlas_align.__all__:
        assert getattr(atlas_align, name) is not None


class _Stop(Exception):
    """Raised by a patched library function: the CLI got as far as building the request."""


def _capture(monkeypatch, module, name):
    import functools

    seen = {}

    @functools.wraps(getattr(module, name))  # keeps the signature: the CLI reads some defaults from it
    def fake(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        raise _Stop

    monkeypatch.setattr(module, name, fake)
    return seen


def test_align_defaults_are_the_request_models_defaults(monkeypatch, tmp_path):
    from atlas_align.alignment import pipeline

    seen = _capture(monkeypatch, pipeline, "run_alignment")
    result = CliRunner().invoke(main, ["align", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, _Stop), result.output
    assert seen["args"][0] == pipeline.AlignRequest()  # every default declared once, in AlignRequest / CorpusConfig
    assert "[default: 4000]" in CliRunner().invoke(main, ["align", "--help"]).output  # help shows the model's value


def test_atlas_build_defaults_are_the_build_configs_defaults(monkeypatch, tmp_path):
    from atlas_align.atlas import build

    seen = _capture(monkeypatch, build, "build_atlas")
    result = CliRunner().invoke(main, ["atlas", "build", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, _Stop), result.output
    assert seen["args"][0] == build.AtlasBuildConfig() and seen["kwargs"]["name"] == "local"


def test_every_method_parameter_is_reachable_with_method_param(monkeypatch, tmp_path):
    import inspect

    from atlas_align.alignment import pipeline
    from atlas_align.fit.methods import METHODS

    samples = {bool: "false", int: "7", float: "0.25"}
    expected = {"false": False, "7": 7, "0.25": 0.25}
    seen = _capture(monkeypatch, pipeline, "run_alignment")
    checked = 0
    for name in METHODS.names():
        for param in list(inspect.signature(METHODS.get(name).__init__).parameters.values())[1:]:
            if param.kind is not param.POSITIONAL_OR_KEYWORD:  # a method without parameters inherits object's (*args, **kwargs)
                continue
            raw = samples[type(param.default)]
            result = CliRunner().invoke(main, ["align", "--method", name, "--method-param", f"{param.name}={raw}", "--out", str(tmp_path / "x")])
            assert isinstance(result.exception, _Stop), result.output
            req = seen["args"][0]
            assert req.method == name and req.method_params == {param.name: expected[raw]}
            METHODS.get(name)(**req.method_params)  # what the fit does with them
            checked += 1
    assert checked >= 3  # procrustes center, random_rotation seed, linear_regression alpha
    result = CliRunner().invoke(main, ["align", "--method-param", "center=False", "--method-param", "centre=1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "did you mean 'center'" in result.output
    result = CliRunner().invoke(main, ["align", "--method-param", "center", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_method_param_values_are_typed():
    from atlas_align.cli.align import parse_value

    assert [parse_value(v) for v in ("false", "True", "3", "-2", "1e-3", "none", "abc")] == [False, True, 3, -2, 0.001, None, "abc"]


def test_steer_export_strength_is_relative_unless_absolute(tmp_path):
    import torch

    from atlas_align.models.steering import REFERENCE_PROMPTS, median_token_norm
    from tests.tiny_models import tiny_llama, word_tokenizer

    al = make_alignment()
    al.save_pretrained(tmp_path / "a")
    model, tok = tiny_llama(), word_tokenizer("bos")
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "steer.pt"
    base = ["steer", "export", str(tmp_path / "a"), "--concept", "1", "--strength", "0.5", "--out", str(out)]
    result = CliRunner().invoke(main, [*base, "--subject", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    unit = median_token_norm(model, tok, "layers.1", REFERENCE_PROMPTS)
    assert float(torch.load(out, weights_only=True)["layers.1"]["steering_vector"].norm()) == pytest.approx(0.5 * unit, rel=1e-5)
    result = CliRunner().invoke(main, [*base, "--absolute"])
    assert result.exit_code == 0, result.output
    assert float(torch.load(out, weights_only=True)["layers.1"]["steering_vector"].norm()) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.integration
def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    for module in ("atlas_align.cli", "atlas_align.cli.main"):
        result = subprocess.run([sys.executable, "-m", module, "steer", "export", "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "--absolute" in result.stdout, result.stderr


def test_demo_steering_step_reports_the_relative_strength():
    from atlas_align.atlas.labels import FeatureLabels
    from atlas_align.cli.demo import STEER_STRENGTH, _steer
    from tests.tiny_models import tiny_llama, word_tokenizer

    al = make_alignment()
    al.labels = FeatureLabels()  # no labels: the demo steers toward feature 0
    lines: list[str] = []
    _steer(al, tiny_llama(), word_tokenizer("bos"), lines.append)
    assert f"strength {STEER_STRENGTH:g} × the median token norm" in lines[0] and any("0 λ=" in line for line in lines)


def test_layer_accepts_index_negative_and_relative_depth(monkeypatch, tmp_path):
    from atlas_align.alignment import pipeline

    seen = _capture(monkeypatch, pipeline, "run_alignment")
    for raw, expected in (("20", 20), ("-2", -2), ("0.66", 0.66), ("1.0", 1.0), ("0", 0)):
        result = CliRunner().invoke(main, ["align", "--layer", raw, "--out", str(tmp_path / "x")])
        assert isinstance(result.exception, _Stop), result.output
        layer = seen["args"][0].layer
        assert layer == expected and type(layer) is type(expected), (raw, layer)
    assert pipeline.AlignRequest().layer == 0.66  # a relative depth: valid for every model
    for bad in ("1.5", "abc", "-0.3"):
        result = CliRunner().invoke(main, ["align", "--layer", bad, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and "Traceback" not in result.output, (bad, result.output)


def test_help_states_layer_numbering_once_and_lists_every_packaged_model():
    from atlas_align.models.assets import KNOWN_MODELS

    text = " ".join(CliRunner().invoke(main, ["align", "--help"]).output.split())
    assert text.count("hidden_states[L+1]") == 1 and "output of block L" in text
    for name in KNOWN_MODELS:
        assert name in text.replace("- ", "-"), name  # click may wrap a name at its hyphen


def test_corpus_options_reach_the_request(monkeypatch, tmp_path):
    from atlas_align.alignment import pipeline

    seen = _capture(monkeypatch, pipeline, "run_alignment")
    args = ["align", "--text-unit", "line", "--window-words", "20", "--heldout-fraction", "0.3", "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, _Stop), result.output
    corpus = seen["args"][0].corpus
    assert (corpus.text_unit, corpus.window_words, corpus.heldout_fraction) == ("line", 20, 0.3)
    assert "[default: paragraph]" in CliRunner().invoke(main, ["align", "--help"]).output


def test_align_prints_the_resolved_block_and_warns_on_a_short_corpus(tmp_path):
    from tests.test_sweep import tiny_folders

    subject, atlas_model = tiny_folders(tmp_path)
    corpus = tmp_path / "lines.txt"
    animals, verbs, things = ("dog", "cat", "horse", "bird", "fish"), ("runs", "eats", "sleeps"), ("apple", "bread", "cheese", "car", "boat", "train")
    corpus.write_text("\n".join(f"the {a} {v} a {t}" for a in animals for v in verbs for t in things))  # 90 lines, no blank line
    base = ["align", "--subject", str(subject), "--atlas", f"model:{atlas_model}@1", "--corpus", str(corpus), "--heldout-fraction", "0.2",
            "--heldout-samples", "4", "--batch-size", "4", "--layer", "0.66", "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(main, [*base, "--samples", "500", "--text-unit", "line"])
    assert result.exit_code == 0, result.output
    assert "--layer 0.66 → block 2 of 4 (0..3)" in result.output and "hidden_states[3]" in result.output
    used = int(result.output.split("training texts used: ")[1].split()[0])
    assert 60 <= used < 90 and f"--samples 500 asks for more texts than the corpus's train split holds: it has {used}" in result.output
    assert "--text-unit line" in result.output
    result = CliRunner().invoke(main, [*base, "--samples", "500"])  # as one paragraph: 450 words → 10 windows of 48
    assert result.exit_code == 2 and "--text-unit paragraph" in result.output
    assert int(result.output.split("training texts used: ")[1].split()[0]) <= 10


def test_models_lists_packaged_models_and_describes_any_model(tmp_path):
    import json

    from atlas_align.models.assets import KNOWN_MODELS
    from tests.test_sweep import tiny_folders

    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    for model in KNOWN_MODELS.values():
        assert model.name in result.output and model.install_command in result.output
    subject, bert = tiny_folders(tmp_path)
    result = CliRunner().invoke(main, ["models", str(subject)])
    assert result.exit_code == 0, result.output
    assert "4 blocks (--layer 0..3" in result.output and "hidden width 32" in result.output and "layers.3.mlp" in result.output
    assert "0.66→2" in result.output
    info = json.loads(CliRunner().invoke(main, ["models", str(bert), "--json"]).output)
    assert info["n_layers"] == 2 and info["hidden_size"] == 16 and not info["causal_lm"]
    assert info["hookpoints"][1] == {"block": 1, "resid": "encoder.layer.1", "hidden_states": 2, "mlp": "encoder.layer.1.output.dense"}
    result = CliRunner().invoke(main, ["models", str(tmp_path / "nothing-here")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_registry_tokens_create_list_revoke(tmp_path):
    from click.testing import CliRunner

    from atlas_align.cli.main import main

    runner = CliRunner()
    root = str(tmp_path / "reg")
    created = runner.invoke(main, ["registry", "token", "create", "--root", root, "--user", "lab", "--expires-in", "3600"])
    assert created.exit_code == 0 and created.output.startswith("hf_"), created.output
    listed = runner.invoke(main, ["registry", "token", "list", "--root", root])
    assert listed.exit_code == 0 and "lab" in listed.output and created.output.strip() not in listed.output  # never the secret
    token_id = listed.output.split()[0]
    assert runner.invoke(main, ["registry", "token", "revoke", token_id, "--root", root]).exit_code == 0
    assert "lab" not in runner.invoke(main, ["registry", "token", "list", "--root", root]).output
    again = runner.invoke(main, ["registry", "token", "revoke", token_id, "--root", root])
    assert again.exit_code == 2 and "token list" in again.output
