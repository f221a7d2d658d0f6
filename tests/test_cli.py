"""The CLI: every command explains itself with an example; user mistakes give one line, exit 2."""

import click
import pytest
from click.testing import CliRunner

from atlas_align.cli.main import main
from tests.test_alignment import make_alignment


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
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
    assert sorted(atlas_align.__all__) == sorted(atlas_align._EXPORTS)
    for name in atlas_align.__all__:
        assert getattr(atlas_align, name) is not None
