"""The HTTP side of the Hub protocol shared by every handler: errors in the Hub's shape, bounded
request bodies, and typed access to untrusted JSON.

Rules this module enforces for the whole server:

* every error is a Hub error: a status, ``X-Error-Code`` where the client maps one (it maps on
  headers, HEAD has no body), an ``X-Error-Message`` that is one printable ASCII line, and a JSON
  ``{"error": ...}`` that says what to do;
* bodies are read up to a limit and refused with 413 beyond it, before they fill memory;
* malformed input (not UTF-8, not JSON, wrong JSON types, huge numbers, deep nesting) is a 400,
  never an exception that escapes as a 500.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atlas_align.errors import AuthError, ConfigError, IntegrityError
from atlas_align.registry.server.store import (
    MAX_OBJECT_SIZE,
    AlreadyExists,
    CorruptBlob,
    EntryNotFound,
    ObjectNotInRepo,
    ParentMismatch,
    RepoNotFound,
    RevisionNotFound,
    StorageFull,
)

__all__ = ["Call", "HubError", "Limits", "as_hub_error", "read_body"]

TOKEN_HELP = "create one with `atlas-align registry token create --root DIR --user USER`"
_UNPRINTABLE_RE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one request may cause; each is configurable through ``create_app``.

    ``max_json_bytes``: JSON bodies (create repo, preupload, LFS batch, tags...).
    ``max_commit_bytes``: one NDJSON commit body, inline base64 content included.
    ``max_commit_line_bytes``: one NDJSON line (one inline file, base64-encoded).
    ``max_commit_operations``: files added or deleted by one commit.
    ``max_lfs_object_bytes``: one LFS object.
    ``page_size``: items per page of listings (models, tree, commits); ``Link`` gives the next.
    ``time_budget_s``: listings stop early at this budget and hand back a ``Link`` to continue.
    ``expand_history``: commits walked to find each entry's last commit (``expand=true``).
    """

    max_json_bytes: int = 1024 * 1024
    max_commit_bytes: int = 512 * 1024 * 1024
    max_commit_line_bytes: int = 160 * 1024 * 1024
    max_commit_operations: int = 50_000
    max_lfs_object_bytes: int = 64 * 1024**3
    page_size: int = 1000
    time_budget_s: float = 2.0
    expand_history: int = 200


# ----------------------------------------------------------------------------- errors
class HubError(Exception):
    """An HTTP error in the Hub's shape: status, optional ``X-Error-Code``, actionable message."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        header_message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.header_message = header_message if header_message is not None else message
        self.headers = headers or {}

    def response(self) -> Response:
        headers = dict(self.headers)
        # The client maps errors on X-Error-Code; every error carries one so that none is
        # misread (e.g. a bare 401 on http:// would not become RepositoryNotFound).
        headers["X-Error-Code"] = self.code or _default_code(self.status)
        # One printable ASCII line: a NUL or newline echoed from a URL would break the response.
        line = _UNPRINTABLE_RE.sub("?", " ".join(self.header_message.split()))[:1000]
        headers["X-Error-Message"] = line
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _default_code(status: int) -> str:
    return {
        400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
        409: "Conflict", 412: "PreconditionFailed", 413: "PayloadTooLarge", 507: "InsufficientStorage",
    }.get(status, "Error")


def as_hub_error(exc: Exception) -> HubError | None:
    """Translate storage and validation errors into the status and code the client expects."""
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, RepoNotFound):
        return HubError(404, str(exc), "RepoNotFound")
    if isinstance(exc, RevisionNotFound):
        return HubError(404, str(exc), "RevisionNotFound")
    if isinstance(exc, EntryNotFound):
        return HubError(404, str(exc), "EntryNotFound")
    if isinstance(exc, AlreadyExists):
        return HubError(409, str(exc))
    if isinstance(exc, ParentMismatch):
        return HubError(412, str(exc))
    if isinstance(exc, AuthError):
        return HubError(
            401, f"{exc}: the token is unknown to this registry, revoked or expired; {TOKEN_HELP}.",
            header_message=str(exc),
        )
    if isinstance(exc, StorageFull):
        # 507 is not in the client's retry list, so a full disk fails fast instead of backing off.
        return HubError(507, str(exc), "InsufficientStorage")
    if isinstance(exc, CorruptBlob):
        return HubError(409, str(exc), "CorruptObject")
    if isinstance(exc, ObjectNotInRepo):
        return HubError(400, str(exc), "ObjectNotInRepo")
    if isinstance(exc, (ConfigError, IntegrityError)):
        return HubError(400, str(exc))
    return None


# ----------------------------------------------------------------------------- bodies
async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HubError(400, "Content-Length must be a number.")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> HubError:
    return HubError(413, f"Request body is larger than this registry accepts ({limit} bytes) for this endpoint.",
                    "PayloadTooLarge")


def parse_json(raw: bytes | str, what: str = "Request body") -> Any:
    """JSON from untrusted bytes: any decoding problem is a 400, never a 500."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise HubError(400, f"{what} is not valid JSON (UTF-8): {str(exc)[:200]}.") from exc


# ----------------------------------------------------------------------------- typed access
def get_str(data: dict[str, Any], key: str, *, default: str | None = None, required: bool = False,
            max_len: int = 4096) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise HubError(400, f"Missing {key!r} (a string) in the request body.")
        return default
    if not isinstance(value, str):
        raise HubError(400, f"{key!r} must be a string, got {type(value).__name__}.")
    if len(value) > max_len:
        raise HubError(400, f"{key!r} is longer than {max_len} characters.")
    return value


def get_size(data: dict[str, Any], key: str = "size", *, required: bool = True) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OBJECT_SIZE:
        raise HubError(400, f"{key!r} must be an integer between 0 and {MAX_OBJECT_SIZE}, got {str(value)[:40]}.")
    return value


def get_bool(data: dict[str, Any], key: str) -> bool | None:
    """A JSON boolean, or the strings 'true'/'false' some clients send; anything else is a 400."""
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise HubError(400, f"{key!r} must be true or false, got {str(value)[:40]!r}.")


def parse_int(value: str | None, what: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 12:
        raise HubError(400, f"{what} must be a non-negative integer, got {value[:40]!r}.")
    return max(low, min(high, int(value)))


# ----------------------------------------------------------------------------- one request
class Call:
    """What a handler sees of one request once its body is read: runs in a worker thread."""

    def __init__(self, request: Request, body: bytes) -> None:
        self.request = request
        self.body = body
        self.query: QueryParams = request.query_params
        self.headers: Headers = request.headers
        self.base_url = str(request.base_url).rstrip("/")
        self.path = request.url.path

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        data = parse_json(self.body)
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object.")
        return data

    def flag(self, key: str) -> bool:
        return self.query.get(key, "").lower() in ("1", "true", "yes")


# ----------------------------------------------------------------------------- repo types in URLs
URL_PREFIX = {"model": "", "dataset": "datasets/"}


def repo_type_of(kind: Any) -> str:
    """``models``/``model``/None → model, ``datasets``/``dataset`` → dataset; anything else is a 400."""
    if kind in (None, "", "model", "models"):
        return "model"
    if kind in ("dataset", "datasets"):
        return "dataset"
    raise HubError(400, f"Repo type {str(kind)[:40]!r} is not supported by this registry; use models or datasets.")
