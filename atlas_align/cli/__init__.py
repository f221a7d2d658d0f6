"""Stage 9 — the ``atlas-align`` command line: thin click commands over the library, one error table.

``main`` is the click group of ``cli/main.py`` (entry point ``atlas_align.cli:main``; also
``python -m atlas_align.cli``); each noun's commands live in their own module here.
"""

from atlas_align.cli.main import main

__all__ = ["main"]
