"""Stage 4 — fitting: streaming statistics, alignment methods, data-parallel reduction."""
