"""Stage 7 — publishing: Hub I/O for pushing and listing artifacts, and our own registry server."""
