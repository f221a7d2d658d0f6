"""Re-run the benchmarks on a downloaded snapshot, never trusting self-reported numbers."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atlas_align.files import CONFIG_FILENAME, EVAL_RESULTS_FILENAME, LABELS_FILENAME, WEIGHTS_FILENAME

# Steering needs minutes of generation per alignment; the board verifies what every alignment has.
VERIFIED_BENCHMARKS = ("translation", "retrieval")
VERIFY_SAMPLES = 1000
VERIFY_SEED = 0


def verify_folder(folder: str | Path, *, benchmarks: Sequence[str] = VERIFIED_BENCHMARKS, samples: int = VERIFY_SAMPLES, seed: int = VERIFY_SEED) -> dict[str, Any]:
    """Evaluate a copy of the artifact (the snapshot itself stays untouched) and return its eval-results JSON."""
    from atlas_align.harness.evaluation import evaluate

    with tempfile.TemporaryDirectory(prefix="atlas-align-verify-") as tmp:
        for name in (CONFIG_FILENAME, WEIGHTS_FILENAME, LABELS_FILENAME):
            if (Path(folder) / name).is_file():
                shutil.copyfile(Path(folder) / name, Path(tmp) / name)
        evaluate(tmp, benchmarks, samples=samples, seed=seed, plot=False)
        return json.loads((Path(tmp) / EVAL_RESULTS_FILENAME).read_text(encoding="utf-8"))
