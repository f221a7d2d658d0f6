"""Re-run the benchmarks on a downloaded snapshot, never trusting self-reported numbers."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atlas_align.files import CONFIG_FILENAME, EVAL_RESULTS_FILENAME, LABELS_FILENAME, WEIGHTS_FILENAME
from atlas_align.harness.benchmarks.metrics import NonFiniteScoreError

# Steering needs minutes of generation per alignment; the board verifies what every alignment has.
VERIFIED_BENCHMARKS = ("translation", "pairs", "retrieval")
VERIFY_SAMPLES = 1000
VERIFY_SEED = 0


def verify_folder(folder: str | Path, *, benchmarks: Sequence[str] = VERIFIED_BENCHMARKS, samples: int = VERIFY_SAMPLES, seed: int = VERIFY_SEED, params: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Evaluate a copy of the artifact (the snapshot itself stays untouched) and return its eval-results JSON.

    A broken artifact never verifies: loading refuses a NaN/inf or all-zero T (IntegrityError),
    the benchmarks refuse non-finite scores, and a non-finite recomputed metric raises
    :class:`NonFiniteScoreError` here.
    """
    from atlas_align.harness.evaluation import evaluate

    with tempfile.TemporaryDirectory(prefix="atlas-align-verify-") as tmp:
        for name in (CONFIG_FILENAME, WEIGHTS_FILENAME, LABELS_FILENAME):
            if (Path(folder) / name).is_file():
                shutil.copyfile(Path(folder) / name, Path(tmp) / name)
        evaluate(tmp, benchmarks, samples=samples, seed=seed, plot=False, params=params)
        results = json.loads((Path(tmp) / EVAL_RESULTS_FILENAME).read_text(encoding="utf-8"))
    bad = nonfinite_metrics(results)
    if bad:
        raise NonFiniteScoreError(f"Recomputed metrics are not finite ({', '.join(bad)}); the alignment in {folder} is broken.")
    return results


def nonfinite_metrics(eval_results: dict[str, Any] | None) -> list[str]:
    """'benchmark:metric' for every NaN/inf number in an eval-results document (reported or recomputed)."""
    results = (eval_results or {}).get("results", eval_results or {})
    entries = results.items() if isinstance(results, dict) else ((r.get("benchmark", "?"), r) for r in results if isinstance(r, dict))
    bad = []
    for name, entry in entries:
        metrics = entry.get("metrics", entry) if isinstance(entry, dict) else {}
        for key, value in (metrics.items() if isinstance(metrics, dict) else ()):
            if isinstance(value, float) and not math.isfinite(value):
                bad.append(f"{str(name).partition('@')[0]}:{key}")
    return bad
