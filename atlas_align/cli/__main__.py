"""``python -m atlas_align.cli`` (and ``torchrun -m atlas_align.cli``) is the ``atlas-align`` command."""

from atlas_align.cli.main import main

main()
