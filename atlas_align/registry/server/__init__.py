"""Stage 7 — the Hub-compatible registry server: routes, store, LFS, auth.

``serve`` and ``create_app`` are the entry points (``atlas-align registry serve`` runs ``serve``);
``create_token`` issues access tokens.
"""

from atlas_align.registry.server.app import Limits, create_app, serve
from atlas_align.registry.server.store import create_token

__all__ = ["Limits", "create_app", "create_token", "serve"]
