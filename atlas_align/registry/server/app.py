"""Assembly: the registry as an ASGI app, and ``serve`` (what ``atlas-align registry serve`` runs).

The pieces: :mod:`.routes` (HTTP handlers), :mod:`.lfs` (LFS upload), :mod:`.auth` (tokens,
permissions, signed URLs), :mod:`.store` (SQLite + content-addressed blobs), :mod:`.cards`
(bounded card metadata), :mod:`.protocol` (Hub errors, body limits, typed JSON), and
:mod:`.maintenance` (gc, fsck, backup and restore of a registry folder; docs/REGISTRY.md).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from atlas_align.registry.server.protocol import Limits
from atlas_align.registry.server.routes import HUB_LFS_THRESHOLD, Routes
from atlas_align.registry.server.store import RegistryStore

__all__ = ["HUB_LFS_THRESHOLD", "Limits", "RegistryASGI", "create_app", "serve"]

logger = logging.getLogger(__name__)
_SECRET_QUERY_RE = re.compile(r"(sig=)[0-9a-fA-F]+")


class RegistryASGI:
    """The ASGI app: every HTTP request goes to :meth:`Routes.dispatch`, whatever its path.

    No Starlette router in front: its path pattern does not match a decoded newline, which would
    answer a bare 404 without the ``X-Error-Code`` the client relies on.
    """

    def __init__(self, routes: Routes) -> None:
        self.state = SimpleNamespace(registry=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self.state.registry.dispatch(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message: Any = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return


def create_app(root: Path | str, *, lfs_threshold: int | None = None, limits: Limits | None = None) -> RegistryASGI:
    """The registry as an ASGI app serving the store under ``root`` (created if missing).

    ``lfs_threshold``: files of at least this many bytes are sent through LFS. ``None`` (default)
    inlines every file, which works for every client, including ones with ``hf_xet`` installed
    (they cannot be moved from Xet to LFS by the server). Set it (e.g. to ``HUB_LFS_THRESHOLD``)
    only when clients run with ``HF_HUB_DISABLE_XET=1``; large files then skip base64.
    ``limits``: bounds on request bodies, pages and time per request (see :class:`Limits`).

    Temporary files left by uploads of an earlier process are removed here.
    """
    store = RegistryStore(root)
    swept = store.sweep_tmp()
    if swept:
        logger.warning("Removed %d temporary upload file(s) left by an earlier run.", swept)
    routes = Routes(store, lfs_threshold=lfs_threshold, limits=limits or Limits())
    return RegistryASGI(routes)


class _RedactSignatures(logging.Filter):
    """Signed upload URLs are bearer credentials: keep their signatures out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_QUERY_RE.sub(r"\1<redacted>", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def serve(
    root: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    lfs_threshold: int | None = None,
    log_level: str = "info",
    limits: Limits | None = None,
) -> None:
    """Serve the registry under ``root`` until interrupted (blocking)."""
    app = create_app(root, lfs_threshold=lfs_threshold, limits=limits)
    print(f"atlas-align registry: serving {Path(root).resolve()} at http://{host}:{port}", flush=True)
    print(f"  point clients at it with HF_ENDPOINT=http://{host}:{port}", flush=True)
    import uvicorn  # imported late: only the serving process needs it

    logging.getLogger("uvicorn.access").addFilter(_RedactSignatures())
    # h11's header cap bounds request lines and headers; keep-alive idles are closed after 5 s.
    uvicorn.run(app, host=host, port=port, log_level=log_level, h11_max_incomplete_event_size=64 * 1024,
                timeout_keep_alive=5)
