"""Stage 2 — models: offline assets and loading, hookpoints, pooled activations, steering hooks."""
