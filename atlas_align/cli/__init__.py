"""Stage 9 — the ``atlas-align`` command line: thin click commands over the library, one error table."""

from atlas_align.cli.main import main

__all__ = ["main"]
