"""Git LFS over HTTP, upload side: batch, basic-transfer PUT, verify.

Objects belong to repos. The batch endpoint says "already have it" only for objects *this* repo
holds, so it is no existence oracle for other repos' files; everything else gets a signed upload
URL, and the PUT must deliver bytes that hash to the oid — proof of possession — before the
object is recorded for the repo. The PUT is streamed to disk as it arrives (memory flat in the
file size) and refused the moment it passes the size the URL was signed for.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atlas_align.registry.server.auth import Auth
from atlas_align.registry.server.protocol import (
    URL_PREFIX,
    Call,
    HubError,
    Limits,
    get_size,
    get_str,
    parse_int,
    repo_type_of,
)
from atlas_align.registry.server.store import RegistryStore, Repo

__all__ = ["LFS_CONTENT_TYPE", "LFS_UPLOAD_URL_TTL_S", "LfsEndpoints"]

LFS_UPLOAD_URL_TTL_S = 3600
LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
MAX_BATCH_OBJECTS = 1000
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_WRITE_BUFFER = 1024 * 1024


class LfsEndpoints:
    def __init__(self, store: RegistryStore, auth: Auth, limits: Limits) -> None:
        self.store = store
        self.auth = auth
        self.limits = limits

    def _repo(self, call: Call, kind: str | None, ns: str, name: str) -> Repo:
        return self.auth.repo(self.auth.caller(call.headers), repo_type_of(kind), ns, name, write=True)

    def batch(self, call: Call, ns: str, name: str, kind: str | None = None) -> Response:
        """LFS batch API, upload only. PUT URLs carry a signature because the client sends them
        without Authorization."""
        repo = self._repo(call, kind, ns, name)
        data = call.json()
        if data.get("operation") != "upload":
            raise HubError(400, "Only the LFS 'upload' operation is supported; download files through /resolve.")
        transfers = data.get("transfers", ["basic"])
        if not isinstance(transfers, list) or "basic" not in transfers:
            raise HubError(400, "Only the LFS 'basic' transfer is supported ('transfers' must list it).")
        requested = data.get("objects", [])
        if not isinstance(requested, list) or len(requested) > MAX_BATCH_OBJECTS:
            raise HubError(400, f"'objects' must be a list of at most {MAX_BATCH_OBJECTS} {{oid, size}} objects.")
        base = f"{call.base_url}/{URL_PREFIX[repo.type]}{repo.repo_id}"
        expires = int(time.time()) + LFS_UPLOAD_URL_TTL_S
        return JSONResponse(
            {"transfer": "basic", "objects": [self._batch_object(repo, obj, base, expires) for obj in requested],
             "hash_algo": "sha256"},
            headers={"Content-Type": LFS_CONTENT_TYPE},
        )

    def _batch_object(self, repo: Repo, obj: Any, base: str, expires: int) -> dict[str, Any]:
        oid = obj.get("oid") if isinstance(obj, dict) else None
        size = obj.get("size") if isinstance(obj, dict) else None
        valid_size = isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= self.limits.max_lfs_object_bytes
        if not isinstance(oid, str) or not _SHA256_RE.fullmatch(oid) or not valid_size:
            return {"oid": str(oid)[:64], "size": size if valid_size else 0,
                    "error": {"code": 422, "message": "oid must be a 64-hex sha256 and size an integer within "
                              f"0..{self.limits.max_lfs_object_bytes}"}}
        if self.store.repo_object_size(repo, oid) == size:
            return {"oid": oid, "size": size}  # no actions: this repo has it already
        signature = self.auth.sign(repo.type, repo.repo_id, oid, size, expires)
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {
                "upload": {
                    "href": f"{base}.git/info/lfs/objects/upload/{oid}?size={size}&expires={expires}&sig={signature}",
                    "expires_in": LFS_UPLOAD_URL_TTL_S,
                },
                "verify": {"href": f"{base}.git/info/lfs/objects/verify"},
            },
        }

    async def upload(self, request: Request, ns: str, name: str, oid: str, kind: str | None = None) -> Response:
        """Basic-transfer PUT: signature first, then the bytes, streamed to disk and hashed."""
        repo_type = repo_type_of(kind)
        query = request.query_params
        size = parse_int(query.get("size"), "size", default=-1, low=-1, high=2**62)
        expires = parse_int(query.get("expires"), "expires", default=0, low=0, high=2**62)
        if size < 0:
            raise HubError(403, "Upload URL is incomplete; request a new one from the LFS batch endpoint.")
        self.auth.check_signature(repo_type, f"{ns}/{name}", oid, size, expires, query.get("sig", ""))
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) != size):
            raise HubError(400, f"This upload URL is for exactly {size} bytes; the request declares {declared[:20]}.")
        repo = await run_in_threadpool(self.store.get_repo, repo_type, ns, name)
        writer = await run_in_threadpool(self.store.open_writer, size)
        try:
            buffer: list[bytes] = []
            buffered = 0
            async for chunk in request.stream():
                buffer.append(chunk)
                buffered += len(chunk)
                if writer.size + buffered > size:
                    raise HubError(400, f"Upload is larger than the {size} bytes this URL was signed for; refused.")
                if buffered >= _WRITE_BUFFER:
                    await run_in_threadpool(writer.write, b"".join(buffer))
                    buffer, buffered = [], 0
            if buffer:
                await run_in_threadpool(writer.write, b"".join(buffer))
            await run_in_threadpool(writer.finish, oid, size)
        except BaseException:
            writer.abort()
            raise
        await run_in_threadpool(self.store.record_object, repo, oid, size)
        return Response(status_code=200, headers={"ETag": f'"{oid}"'})

    def verify(self, call: Call, ns: str, name: str, kind: str | None = None) -> Response:
        repo = self._repo(call, kind, ns, name)
        data = call.json()
        oid = get_str(data, "oid", required=True, max_len=64)
        size = get_size(data, "size")
        if self.store.repo_object_size(repo, oid) != size:
            raise HubError(404, f"LFS object {oid} ({size} bytes) was not received by {repo.repo_id}; upload it again.")
        return JSONResponse({"message": "Object verified"})
