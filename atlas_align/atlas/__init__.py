"""Stage 3 — the Concept Atlas: labelled SAE atlases, raw model spaces, atlas building and label search."""
