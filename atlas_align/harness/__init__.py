"""Stage 6 — evaluation: versioned benchmarks, the evaluation runner, the lm-eval model."""
