#!/usr/bin/env python
"""Render the WordNet gloss → word lm-eval task into a folder, and optionally measure a capability cost.

    python scripts/build_capability_task.py --out tasks/            # then lm-eval --include_path tasks/
    python scripts/build_capability_task.py --measure ALIGNMENT --concept noun.animal --strength 0.25 --limit 100

The task (``atlas_wordnet_gloss``) is generated from the packaged WordNet corpus with a fixed seed,
so nothing is downloaded; see :mod:`atlas_align.harness.capability`. With ``--measure`` the task is
run unsteered and steered (the model the alignment records unless ``--model``) and the
:class:`~atlas_align.harness.capability.CapabilityCost` is printed as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from atlas_align.harness.capability import DEFAULT_N_ITEMS, build_capability_task, capability_cost  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="task folder (default: the atlas-align cache)")
    parser.add_argument("--n-items", type=int, default=DEFAULT_N_ITEMS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", metavar="ALIGNMENT", help="alignment folder or repo id: measure its capability cost")
    parser.add_argument("--model", default=None, help="subject model name or folder (default: the alignment's)")
    parser.add_argument("--concept", default="noun.animal")
    parser.add_argument("--strength", type=float, default=0.25)
    parser.add_argument("--absolute", action="store_true")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    task = build_capability_task(args.out, n_items=args.n_items, seed=args.seed)
    print(f"task {task.task}: {task.n_items} items in {task.folder}", file=sys.stderr)
    if not args.measure:
        print(f"run it with: python -m atlas_align.harness.lm_eval run --tasks {task.task} --include_path {task.folder} --model ...", file=sys.stderr)
        return 0
    start = time.perf_counter()
    cost = capability_cost(
        args.measure, args.model, args.concept, args.strength, limit=args.limit, n_items=args.n_items, seed=args.seed,
        absolute=args.absolute, batch_size=args.batch_size, task_folder=task.folder,
    )
    print(cost.model_dump_json(indent=2))
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
