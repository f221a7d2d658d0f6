"""Versioned benchmarks of an alignment: ``translation@2``, ``pairs@1``, ``retrieval@2``, ``steering@3``.

Each is registered in :data:`BENCHMARKS` under ``name@version`` and returns a
:class:`BenchmarkResult` (metrics beside their controls, per-feature details, provenance).
"""

from atlas_align.harness.benchmarks import pairs, queries, retrieval, steering, translation, unit  # noqa: F401  (registers them; queries: the template and llm query generators)
from atlas_align.harness.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkContext,
    BenchmarkResult,
    Provenance,
    benchmark_key,
    get_benchmark,
    register_benchmark,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkContext",
    "BenchmarkResult",
    "Provenance",
    "benchmark_key",
    "get_benchmark",
    "register_benchmark",
]
