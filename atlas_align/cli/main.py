"""`atlas-align` command line: the click group, the one table of user errors, and shared options.

Each noun has its own module (``align``, ``demo``, ``search``, ``hub``, ``registry``, ``leaderboard``,
``atlas``, ``eval``, ``steer``, ``models``) holding thin click commands that call one library function and
print; :data:`COMMANDS` below is the one list of them, loaded on first use. Defaults are not repeated
here: :class:`FieldDefault` reads them from the pydantic model (or function) that owns them, lazily,
so ``--help`` and the light commands do not import torch.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Any

import click

from atlas_align.errors import AtlasAlignError


def _user_error_message(exc: Exception) -> str | None:
    """The one table mapping user-caused errors to messages; None means a real bug (traceback)."""
    from pydantic import ValidationError

    if isinstance(exc, AtlasAlignError):
        return str(exc)
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return f"Invalid option value ({problems}). See --help."
    try:
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, HfHubHTTPError):
        return f"The Hub/registry refused the request: {str(exc).splitlines()[0]}. Check HF_ENDPOINT, HF_TOKEN and the repo id."
    if isinstance(exc, EntryNotFoundError):  # includes LocalEntryNotFoundError: offline and not cached
        return f"Not found on the Hub or in the local cache: {str(exc).splitlines()[0].rstrip('.')}. Check the name, or go online."
    if isinstance(exc, HFValidationError):
        return f"Not a folder and not a valid repo id: {str(exc).splitlines()[0]}"
    return None


def friendly_errors(func):
    """Map user mistakes to a one-line message and exit code 2 (no traceback for user mistakes)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            message = _user_error_message(exc)
            if message is None:
                raise
            click.secho(f"Error: {message}", fg="red", err=True)
            sys.exit(2)

    return wrapper


class FieldDefault:
    """A click default owned by a pydantic model field or a function parameter, read when first needed.

    ``FieldDefault("atlas_align.alignment.pipeline:AlignRequest", "samples")`` is
    ``AlignRequest.model_fields["samples"].default``; for a function, its signature's default.
    ``path`` walks into nested models (``"corpus.source"``); ``transform`` turns the value into
    the option's text (e.g. a tuple into 'a,b,c'). Help shows the value.
    """

    def __init__(self, owner: str, path: str, transform=None) -> None:
        self.owner, self.path, self.transform = owner, path, transform

    def resolve(self) -> Any:
        module, _, name = self.owner.partition(":")
        obj: Any = getattr(importlib.import_module(module), name)
        value: Any = None
        for part in self.path.split("."):
            if inspect.isroutine(obj):
                value = inspect.signature(obj).parameters[part].default
            else:  # a pydantic model class, or the default instance of a nested one
                value = (obj if isinstance(obj, type) else type(obj)).model_fields[part].get_default(call_default_factory=True)
            obj = value
        return self.transform(value) if self.transform else value

    def __call__(self) -> Any:
        return self.resolve()

    def __str__(self) -> str:  # what --help shows
        return str(self.resolve())


endpoint_option = click.option("--endpoint", envvar="HF_ENDPOINT", default=None, help="Hub or registry server URL (default: $HF_ENDPOINT, else huggingface.co).")
token_option = click.option("--token", envvar="HF_TOKEN", default=None, help="Access token (default: $HF_TOKEN or the cached login).")
revision_option = click.option("--revision", default=None, help="Branch, tag or commit sha when ARTIFACT is a repo id.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# The nouns: command name → (module under atlas_align/cli/, attribute). Imported when first used.
COMMANDS: dict[str, tuple[str, str]] = {
    "align": ("align", "align"),
    "atlas": ("atlas", "atlas"),
    "demo": ("demo", "demo"),
    "eval": ("eval", "eval_command"),
    "explain": ("explain", "explain"),
    "leaderboard": ("leaderboard", "leaderboard"),
    "models": ("models", "models"),
    "pull": ("hub", "pull"),
    "push": ("hub", "push"),
    "registry": ("registry", "registry"),
    "search": ("search", "search"),
    "steer": ("steer", "steer"),
}


class NounGroup(click.Group):
    """The top-level group: each command lives in its noun's module, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name]
        return getattr(importlib.import_module(f"atlas_align.cli.{module}"), attr)


@click.group(cls=NounGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="atlas-align", message="%(version)s")
def main() -> None:
    """Align any model to a labelled Concept Atlas; search, explain and steer it; publish and evaluate.

    \b
    Quick start (offline, real models, a few minutes on a laptop CPU):
      atlas-align demo
    """


if __name__ == "__main__":  # pragma: no cover  (`python -m atlas_align.cli.main`, kept for torchrun and old scripts)
    main()
