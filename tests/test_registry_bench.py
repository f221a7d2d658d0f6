"""bench/bench_registry.py runs end to end (tiny settings): real clients against a server process,
no errors, and it prints the side-by-side table and the slowdown ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_bench_registry_runs_and_reports_the_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "bench/bench_registry.py", "--quick", "--seconds", "1.5", "--repos-large", "30",
         "--clients", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| operation   | 20 repos ops/s | p50 ms | p99 ms | 30 repos ops/s" in out
    for op in ("download", "list_models", "commit", "total"):
        assert f"| {op}" in out
    assert "slowdown 30 vs 20 repos (total ops/s, best round):" in out
    assert "errors: 0 at 20 repos, 0 at 30 repos" in out
    assert "server tracebacks in the logs: 0 at 20 repos, 0 at 30 repos" in out
