"""Stage 1 — shared text: local files, HF datasets and the built-in WordNet corpus, windowed and split."""
