"""Stage 7 — the Hub-compatible registry server: routes, store, LFS, auth."""
