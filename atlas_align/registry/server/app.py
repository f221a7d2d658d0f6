"""A registry server that speaks the subset of the Hub HTTP API used by the official client.

Air-gapped labs point the unmodified ``huggingface_hub`` at it (``HF_ENDPOINT=http://host:port``)
and keep using ``HfApi``, ``hf_hub_download``, ``snapshot_download``, ``upload_folder``,
``ModelHubMixin`` and ``ModelCard``. The protocol facts it follows are in ``HUB_PROTOCOL.md``;
what matters most:

* every error carries ``X-Error-Code`` (the client maps errors on headers, HEAD has no body) and
  a JSON ``{"error": ...}`` that says what to do;
* revisions and tree paths arrive ``%2F``-quoted, so routing splits the *raw* path first;
* ``/resolve`` answers with content-derived ETags and the full commit sha, and pins branch and tag
  names to a sha with a same-origin 307 so a download never mixes two revisions;
* no Xet: downloads are plain HTTP, uploads are inline base64 ("regular") or LFS basic transfer.

Run it with ``python -m atlas_align.registry.server.app --root DIR --port P``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import html
import json
import logging
import mimetypes
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import yaml
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from atlas_align.errors import AuthError, ConfigError, IntegrityError
from atlas_align.registry.server.store import (
    DEFAULT_BRANCH,
    AddFile,
    AlreadyExists,
    Commit,
    CommitOperation,
    DeleteFile,
    DeleteFolder,
    EntryNotFound,
    ParentMismatch,
    RegistryStore,
    Repo,
    RepoNotFound,
    RevisionNotFound,
    TokenInfo,
    TreeEntry,
    authenticate,
    check_path,
    create_token,
)

__all__ = ["create_app", "create_token", "main", "serve"]

logger = logging.getLogger(__name__)

# The Hub's own rule: files above 10 MB go through LFS.
HUB_LFS_THRESHOLD = 10 * 1024 * 1024
LFS_UPLOAD_URL_TTL_S = 3600
_LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
_URL_TYPES = {"models": "model", "datasets": "dataset"}
_URL_PREFIX = {"model": "", "dataset": "datasets/"}
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FRONT_MATTER_RE = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
_SORT_KEYS = {"lastModified", "createdAt", "id", "downloads", "likes", "trendingScore"}


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
        if self.code:
            headers["X-Error-Code"] = self.code
        # Headers must be one latin-1 line; the body keeps the exact text.
        headers["X-Error-Message"] = " ".join(self.header_message.split()).encode("ascii", "replace").decode()
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _as_hub_error(exc: Exception) -> HubError | None:
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
            401,
            f"{exc}: the token is unknown to this registry. Create one with "
            "`python -m atlas_align.registry.server.app --root DIR --create-token USER`.",
            header_message=str(exc),
        )
    if isinstance(exc, (ConfigError, IntegrityError)):
        return HubError(400, str(exc))
    return None


# ----------------------------------------------------------------------------- routing
Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class _Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler


_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
_API_REPO = r"^/api/(?P<kind>models|datasets|spaces)/" + _REPO
_FILE_REPO = r"^(?:/(?P<kind>datasets|spaces))?/" + _REPO


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern + r"$")


# ----------------------------------------------------------------------------- card data
def parse_card_data(text: str) -> dict[str, Any] | None:
    """The YAML block at the top of a README, as the Hub exposes it in ``cardData``."""
    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        return None
    data = yaml.safe_load(match.group(2))
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError("The README metadata block must be a YAML mapping (key: value lines).")
    # Dates and other YAML scalars must survive JSON encoding.
    return json.loads(json.dumps(data, default=str))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if item is not None]
    return [str(value)]


def derive_tags(card: dict[str, Any] | None) -> list[str]:
    """Tags the Hub derives from a card, so ``list_models(filter=...)`` finds the same repos here."""
    if not card:
        return []
    tags: list[str] = []
    tags += _as_list(card.get("tags"))
    tags += _as_list(card.get("library_name"))
    tags += _as_list(card.get("pipeline_tag"))
    tags += _as_list(card.get("language"))
    tags += [f"license:{item}" for item in _as_list(card.get("license"))]
    tags += [f"dataset:{item}" for item in _as_list(card.get("datasets"))]
    relation = card.get("base_model_relation")
    for base in _as_list(card.get("base_model")):
        tags.append(f"base_model:{base}")
        if relation:
            tags.append(f"base_model:{relation}:{base}")
    return list(dict.fromkeys(tags))


# ----------------------------------------------------------------------------- the app
class RegistryApp:
    """Request handlers over one :class:`RegistryStore`."""

    def __init__(self, root: Path, lfs_threshold: int | None) -> None:
        self.store = RegistryStore(root)
        self.lfs_threshold = lfs_threshold
        self._signing_key = self.store.signing_key()
        self._card_cache: dict[str, dict[str, Any] | None] = {}
        self.routes: list[_Route] = []
        add = self._add
        add("GET", r"^/api/whoami-v2", self.whoami)
        add("GET", r"^/api/agent-harnesses", self.not_provided)
        add("POST", r"^/api/validate-yaml", self.validate_yaml)
        add("POST", r"^/api/repos/create", self.create_repo)
        add("DELETE", r"^/api/repos/delete", self.delete_repo)
        add("POST", r"^/api/repos/move", self.unsupported)
        add("GET", r"^/api/(?P<kind>models|datasets|spaces)", self.list_repos)
        add("GET", _API_REPO, self.repo_info)
        add("GET", _API_REPO + r"/revision/(?P<rev>[^/]+)", self.repo_info)
        add("GET", _API_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self.tree)
        add("POST", _API_REPO + r"/paths-info/(?P<rev>[^/]+)", self.paths_info)
        add("GET", _API_REPO + r"/refs", self.list_refs)
        add("GET", _API_REPO + r"/commits/(?P<rev>[^/]+)", self.list_commits)
        add("POST", _API_REPO + r"/preupload/(?P<rev>[^/]+)", self.preupload)
        add("POST", _API_REPO + r"/commit/(?P<rev>[^/]+)", self.commit)
        add("POST", _API_REPO + r"/tag/(?P<rev>[^/]+)", self.create_tag)
        add("DELETE", _API_REPO + r"/tag/(?P<rev>[^/]+)", self.delete_tag)
        add("POST", _API_REPO + r"/branch/(?P<rev>[^/]+)", self.create_branch)
        add("DELETE", _API_REPO + r"/branch/(?P<rev>[^/]+)", self.delete_branch)
        add("PUT", _API_REPO + r"/settings", self.update_settings)
        add("GET", _API_REPO + r"/xet-(?:read|write)-token/(?P<rev>[^/]+)", self.xet_token)
        add("GET", _API_REPO + r"/discussions", self.list_discussions)
        add("POST", _API_REPO + r"/discussions(?:/.*)?", self.unsupported)
        add("GET", _API_REPO + r"/discussions/.+", self.unsupported)
        add("GET HEAD", _FILE_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve)
        add("POST", _FILE_REPO + r"\.git/info/lfs/objects/batch", self.lfs_batch)
        add("PUT", _FILE_REPO + r"\.git/info/lfs/objects/upload/(?P<oid>[0-9a-f]{64})", self.lfs_upload)
        add("POST", _FILE_REPO + r"\.git/info/lfs/objects/verify", self.lfs_verify)

    def _add(self, methods: str, pattern: str, handler: Handler) -> None:
        self.routes.append(_Route(frozenset(methods.split()), _rx(pattern), handler))

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        """Route on the raw path: Starlette would decode ``%2F`` inside revisions before matching."""
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1").split("?", 1)[0]
        method = request.method.upper()
        try:
            allowed: set[str] = set()
            for route in self.routes:
                match = route.pattern.match(raw_path)
                if match is None:
                    continue
                if method not in route.methods:
                    allowed |= route.methods
                    continue
                params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                return await route.handler(request, **params)
            if allowed:
                raise HubError(405, f"{method} is not supported on {raw_path}; use {', '.join(sorted(allowed))}.")
            raise HubError(404, f"Unknown endpoint {method} {raw_path}: this registry implements the Hub API "
                           "subset used by huggingface_hub (see HUB_PROTOCOL.md).")
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as a Hub error
            hub_error = _as_hub_error(exc)
            if hub_error is None:
                logger.exception("Internal error on %s %s", method, raw_path)
                hub_error = HubError(500, f"Internal registry error ({type(exc).__name__}: {exc}); see server log.")
            return hub_error.response()

    # -- shared helpers ----------------------------------------------------------------------
    def _caller(self, request: Request) -> TokenInfo | None:
        header = request.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Invalid credentials in Authorization header")
        return authenticate(self.store, token.strip())

    @staticmethod
    def _require_write(caller: TokenInfo | None, namespace: str) -> TokenInfo:
        if caller is None:
            raise HubError(
                401,
                "Authentication required: this operation needs a write token. Pass token=... to HfApi or set "
                "HF_TOKEN (create one with `python -m atlas_align.registry.server.app --root DIR --create-token USER`).",
            )
        if not caller.write:
            raise HubError(403, f"The token of user {caller.user!r} is read-only; use a write token.")
        if caller.user != namespace:
            raise HubError(
                403, f"User {caller.user!r} cannot write to namespace {namespace!r}; use a token of {namespace!r}."
            )
        return caller

    @staticmethod
    def _repo_type(kind: str | None) -> str:
        if kind in (None, "", "model", "models"):
            return "model"
        if kind in ("dataset", "datasets"):
            return "dataset"
        raise HubError(400, f"Repo type {kind!r} is not supported by this registry; use models or datasets.")

    def _repo(self, request: Request, kind: str | None, ns: str, name: str, *, write: bool = False) -> Repo:
        """The repo if the caller may see it; private repos of others look missing, as on the Hub."""
        repo_type = self._repo_type(kind)
        caller = self._caller(request)
        try:
            repo = self.store.get_repo(repo_type, ns, name)
        except RepoNotFound:
            repo = None
        if repo is None or (repo.private and (caller is None or caller.user != repo.namespace)):
            raise HubError(
                404,
                f"Repository {ns}/{name} ({repo_type}) not found. Check the repo id and repo_type; if it is "
                "private, pass a token of its owner.",
                "RepoNotFound",
            )
        if write:
            self._require_write(caller, repo.namespace)
        return repo

    @staticmethod
    def _base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _repo_url(self, request: Request, repo: Repo) -> str:
        return f"{self._base_url(request)}/{_URL_PREFIX[repo.type]}{repo.repo_id}"

    def _card(self, commit: Commit) -> dict[str, Any] | None:
        """Card data of a commit's README; cached by content hash, which never changes meaning."""
        entry = commit.tree.get("README.md")
        if entry is None:
            return None
        if entry.sha256 not in self._card_cache:
            try:
                card = parse_card_data(self.store.read_blob(entry.sha256).decode("utf-8", errors="replace"))
            except (ConfigError, yaml.YAMLError):
                card = None  # a broken card must not make the repo unreadable
            if len(self._card_cache) > 4096:
                self._card_cache.clear()
            self._card_cache[entry.sha256] = card
        return self._card_cache[entry.sha256]

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        body = await request.body()
        if not body:
            return {}
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise HubError(400, f"Request body is not valid JSON: {exc}.") from exc
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object.")
        return data

    @staticmethod
    def _flag(request: Request, key: str) -> bool:
        return request.query_params.get(key, "").lower() in ("1", "true", "yes")

    # -- misc --------------------------------------------------------------------------------
    async def not_provided(self, request: Request) -> Response:
        raise HubError(404, "Not provided by this registry.")

    async def unsupported(self, request: Request, **_: str) -> Response:
        raise HubError(400, "Not supported by this registry (pull requests, discussions and repo moves are Hub-only).")

    async def xet_token(self, request: Request, **_: str) -> Response:
        raise HubError(
            400,
            "This registry does not speak Xet. Set HF_HUB_DISABLE_XET=1 before importing huggingface_hub so "
            "large files go through LFS, or run the server without --lfs-threshold so every file is inlined.",
        )

    async def list_discussions(self, request: Request, kind: str, ns: str, name: str) -> Response:
        self._repo(request, kind, ns, name)
        return JSONResponse({"discussions": [], "count": 0, "start": 0, "numClosedDiscussions": 0})

    async def whoami(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None:
            raise HubError(401, "Not authenticated: pass a token (HfApi(token=...) or HF_TOKEN).")
        role = "write" if caller.write else "read"
        return JSONResponse(
            {
                "type": "user",
                "id": caller.user,
                "name": caller.user,
                "fullname": caller.user,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "atlas-align registry", "role": role}},
            }
        )

    async def validate_yaml(self, request: Request) -> Response:
        """Always answer JSON: the client reads the body before it checks the status."""
        try:
            data = await self._json(request)
            parse_card_data(str(data.get("content", "")))
        except (HubError, ConfigError, yaml.YAMLError) as exc:
            message = exc.message if isinstance(exc, HubError) else f"Invalid YAML metadata in README.md: {exc}"
            return JSONResponse({"errors": [{"message": message}], "warnings": []}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    # -- repos -------------------------------------------------------------------------------
    async def create_repo(self, request: Request) -> Response:
        data = await self._json(request)
        caller = self._caller(request)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise HubError(400, "Missing repo 'name' in the request body.")
        if "/" in name:  # older clients send the full id as name
            namespace, name = name.split("/", 1)
        else:  # push_to_hub("name") sends organization=null: the token's user owns it
            namespace = data.get("organization") or (caller.user if caller else "")
        repo_type = self._repo_type(data.get("type"))
        caller = self._require_write(caller, namespace)
        private = data.get("visibility") == "private" or data.get("private") is True
        url = f"{self._base_url(request)}/{_URL_PREFIX[repo_type]}{namespace}/{name}"
        try:
            await run_in_threadpool(
                self.store.create_repo, repo_type, namespace, name, private=private, author=caller.user
            )
        except AlreadyExists as exc:
            # exist_ok=True swallows the 409 but still reads "url" from the body.
            return JSONResponse({"error": f"You already created this {repo_type} repo: {exc}", "url": url}, 409)
        return JSONResponse({"url": url, "name": f"{namespace}/{name}", "id": f"{namespace}/{name}"})

    async def delete_repo(self, request: Request) -> Response:
        data = await self._json(request)
        caller = self._caller(request)
        name = data.get("name") or ""
        namespace = data.get("organization") or (caller.user if caller else "")
        repo = self._repo(request, data.get("type"), namespace, name, write=True)
        await run_in_threadpool(self.store.delete_repo, repo)
        return JSONResponse({})

    async def update_settings(self, request: Request, kind: str, ns: str, name: str) -> Response:
        repo = self._repo(request, kind, ns, name, write=True)
        data = await self._json(request)
        if data.get("gated") not in (None, False, "false"):
            raise HubError(400, "Gated repos are not supported by this registry; use private=True instead.")
        private = data.get("private")
        if "visibility" in data:
            private = data["visibility"] == "private"
        if private is not None:
            self.store.set_private(repo, bool(private))
        return JSONResponse({})

    # -- info and listings ---------------------------------------------------------------------
    def _siblings(self, tree: dict[str, TreeEntry], blobs: bool) -> list[dict[str, Any]]:
        siblings = []
        for path, entry in sorted(tree.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling["size"] = entry.size
                sibling["blobId"] = entry.oid
                if entry.is_lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        return siblings

    def _info(self, repo: Repo, commit: Commit, *, siblings: bool, blobs: bool = False) -> dict[str, Any]:
        card = self._card(commit)
        info: dict[str, Any] = {
            "_id": f"{repo.id:024x}",
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": derive_tags(card),
            "cardData": card,
            "usedStorage": sum(entry.size for entry in commit.tree.values()),
        }
        if repo.type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = (card or {}).get("library_name")
            info["pipeline_tag"] = (card or {}).get("pipeline_tag")
            info["spaces"] = []
        if siblings:
            info["siblings"] = self._siblings(commit.tree, blobs)
        return info

    @staticmethod
    def _expand(info: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        """``expand=`` asks for exactly these properties (plus the id), as on the Hub."""
        keep = {"_id", "id", *expand}
        return {key: value for key, value in info.items() if key in keep}

    async def repo_info(self, request: Request, kind: str, ns: str, name: str, rev: str = DEFAULT_BRANCH) -> Response:
        repo = self._repo(request, kind, ns, name)
        commit = self.store.get_commit(self.store.resolve(repo, rev))
        info = self._info(repo, commit, siblings=True, blobs=self._flag(request, "blobs"))
        expand = request.query_params.getlist("expand")
        return JSONResponse(self._expand(info, expand) if expand else info)

    async def list_repos(self, request: Request, kind: str) -> Response:
        repo_type = self._repo_type(kind)
        caller = self._caller(request)
        query = request.query_params
        filters = [value for value in query.getlist("filter") if value]
        searches = [value.lower() for value in query.getlist("search") if value]
        author = query.get("author")
        pipeline_tag = query.get("pipeline_tag")
        full = self._flag(request, "full")
        with_card = full or self._flag(request, "cardData")
        expand = query.getlist("expand")
        results = []
        for repo in self.store.list_repos(repo_type):
            if repo.private and (caller is None or caller.user != repo.namespace):
                continue
            if author and repo.namespace != author:
                continue
            if searches and not any(term in repo.repo_id.lower() for term in searches):
                continue
            head = self.store.branch_head(repo, DEFAULT_BRANCH)
            if head is None:
                continue
            info = self._info(repo, self.store.get_commit(head), siblings=full or "siblings" in expand)
            if not all(tag in info["tags"] for tag in filters):
                continue
            if pipeline_tag and info.get("pipeline_tag") != pipeline_tag:
                continue
            if not with_card and "cardData" not in expand:
                info.pop("cardData")
            results.append(self._expand(info, expand) if expand else info)
        sort = query.get("sort") or "lastModified"
        if sort not in _SORT_KEYS:
            raise HubError(400, f"Unknown sort {sort!r}; use one of {', '.join(sorted(_SORT_KEYS))}.")
        if sort == "id":
            results.sort(key=lambda info: info["id"])
        else:
            key = sort if sort in ("lastModified", "createdAt") else "lastModified"
            results.sort(key=lambda info: str(info.get(key) or ""), reverse=True)
        limit = query.get("limit")
        if limit is not None:
            try:
                results = results[: max(0, int(limit))]
            except ValueError as exc:
                raise HubError(400, f"limit must be an integer, got {limit!r}.") from exc
        return JSONResponse(results)

    # -- tree and paths-info -------------------------------------------------------------------
    @staticmethod
    def _folder_oid(tree: dict[str, TreeEntry], folder: str) -> str | None:
        prefix = folder + "/"
        children = sorted((path, entry.oid) for path, entry in tree.items() if path.startswith(prefix))
        if not children:
            return None
        return hashlib.sha1(json.dumps(children).encode()).hexdigest()

    def _entry_json(self, tree: dict[str, TreeEntry], path: str) -> dict[str, Any] | None:
        entry = tree.get(path)
        if entry is not None:
            item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.is_lfs:
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            return item
        oid = self._folder_oid(tree, path)
        return None if oid is None else {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _add_last_commits(self, items: list[dict[str, Any]], head: str) -> None:
        """``expand=true``: the newest commit that changed each path (walks at most 1000 commits)."""
        history = self.store.history(head, limit=1000)
        for item in items:
            def oid_at(commit: Commit, item=item) -> str | None:
                found = self._entry_json(commit.tree, item["path"])
                return None if found is None else found["oid"]

            last = history[-1]
            for newer, older in zip(history, history[1:]):
                if oid_at(newer) != oid_at(older):
                    last = newer
                    break
            item["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}

    async def tree(self, request: Request, kind: str, ns: str, name: str, rev: str, path: str = "") -> Response:
        repo = self._repo(request, kind, ns, name)
        sha = self.store.resolve(repo, rev)
        tree = self.store.get_commit(sha).tree
        base = path.strip("/")
        prefix = base + "/" if base else ""
        if base and self._folder_oid(tree, base) is None:
            what = "is a file, not a folder" if base in tree else "does not exist"
            raise HubError(404, f"Path {base!r} {what} in {repo.repo_id}@{rev}.", "EntryNotFound")
        recursive = self._flag(request, "recursive")
        paths: set[str] = set()
        for file_path in tree:
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            if recursive:
                paths.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
            else:
                paths.add(prefix + parts[0])
        items = [item for item in (self._entry_json(tree, p) for p in sorted(paths)) if item is not None]
        if self._flag(request, "expand"):
            self._add_last_commits(items, sha)
        return JSONResponse(items)

    async def paths_info(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name)
        sha = self.store.resolve(repo, rev)
        tree = self.store.get_commit(sha).tree
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(body or b"{}")
            paths, expand = _as_list(data.get("paths")), str(data.get("expand", "")).lower() == "true"
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", [""])[0].lower() in ("1", "true")
        items = [item for item in (self._entry_json(tree, p.strip("/")) for p in paths) if item is not None]
        if expand:
            self._add_last_commits(items, sha)
        return JSONResponse(items)

    # -- refs and commits ----------------------------------------------------------------------
    async def list_refs(self, request: Request, kind: str, ns: str, name: str) -> Response:
        repo = self._repo(request, kind, ns, name)

        def refs(kind_: str, prefix: str) -> list[dict[str, str]]:
            return [
                {"name": ref, "ref": f"{prefix}{ref}", "targetCommit": sha}
                for ref, sha in self.store.refs(repo, kind_).items()
            ]

        return JSONResponse(
            {"branches": refs("branch", "refs/heads/"), "converts": [], "tags": refs("tag", "refs/tags/"),
             "pullRequests": []}
        )

    async def list_commits(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name)
        formatted = "formatted" in request.query_params.getlist("expand[]") + request.query_params.getlist("expand")
        items = []
        for commit in self.store.history(self.store.resolve(repo, rev)):
            item: dict[str, Any] = {
                "id": commit.sha,
                "title": commit.title,
                "message": commit.message,
                "date": commit.date,
                "authors": [{"user": commit.author}],
            }
            if formatted:
                item["formatted"] = {"title": html.escape(commit.title), "message": html.escape(commit.message)}
            items.append(item)
        return JSONResponse(items)

    async def create_tag(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name, write=True)
        data = await self._json(request)
        tag = data.get("tag")
        if not isinstance(tag, str) or not tag:
            raise HubError(400, "Missing 'tag' in the request body.")
        sha = await run_in_threadpool(self.store.create_ref, repo, "tag", tag, rev, data.get("message"))
        return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": sha})

    async def delete_tag(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name, write=True)
        await run_in_threadpool(self.store.delete_ref, repo, "tag", rev)
        return JSONResponse({})

    async def create_branch(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name, write=True)
        data = await self._json(request)
        start = data.get("startingPoint") or DEFAULT_BRANCH
        sha = await run_in_threadpool(self.store.create_ref, repo, "branch", rev, start)
        return JSONResponse({"name": rev, "ref": f"refs/heads/{rev}", "targetCommit": sha})

    async def delete_branch(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name, write=True)
        await run_in_threadpool(self.store.delete_ref, repo, "branch", rev)
        return JSONResponse({})

    # -- uploads -------------------------------------------------------------------------------
    def _branch_for_write(self, request: Request, repo: Repo, rev: str) -> str:
        if self._flag(request, "create_pr"):
            raise HubError(400, "Pull requests are not supported by this registry; commit to a branch instead.")
        branch = rev.removeprefix("refs/heads/")
        if self.store.branch_head(repo, branch) is None:
            raise HubError(
                404,
                f"Branch {branch!r} not found in {repo.repo_id}; uploads go to an existing branch "
                "(create it with create_branch).",
                "RevisionNotFound",
            )
        return branch

    def _upload_mode(self, size: int) -> str:
        if self.lfs_threshold is None or size == 0 or size < self.lfs_threshold:
            return "regular"
        return "lfs"

    async def preupload(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        """Decide regular (inline base64) vs LFS per file, by size only (see ``lfs_threshold``)."""
        repo = self._repo(request, kind, ns, name, write=True)
        branch = self._branch_for_write(request, repo, rev)
        tree = self.store.get_commit(self.store.branch_head(repo, branch) or "").tree
        data = await self._json(request)
        files = data.get("files")
        if not isinstance(files, list):
            raise HubError(400, "Preupload body needs a 'files' list of {path, sample, size}.")
        answer = []
        for item in files:
            path, size = item.get("path"), item.get("size")
            if not isinstance(path, str) or not isinstance(size, int):
                raise HubError(400, "Each preupload file needs a string 'path' and an integer 'size'.")
            mode = self._upload_mode(size)
            entry = tree.get(path)
            oid = None if entry is None else (entry.sha256 if entry.is_lfs else entry.oid)
            answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return JSONResponse({"files": answer})

    async def commit(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(request, kind, ns, name, write=True)
        caller = self._caller(request)
        branch = self._branch_for_write(request, repo, rev)
        header: dict[str, Any] | None = None
        operations: list[CommitOperation] = []
        async for line in _ndjson(request):
            key, value = line.get("key"), line.get("value")
            if not isinstance(value, dict):
                raise HubError(400, f"Commit line {key!r} has no 'value' object.")
            if key == "header":
                header = value
            elif key == "file":
                operations.append(await self._inline_file(value))
            elif key == "lfsFile":
                operations.append(self._lfs_file(value))
            elif key == "deletedFile":
                operations.append(DeleteFile(check_path(str(value.get("path", "")))))
            elif key == "deletedFolder":
                operations.append(DeleteFolder(check_path(str(value.get("path", "")).rstrip("/"))))
            else:
                raise HubError(400, f"Unknown commit line key {key!r}; expected header, file, lfsFile, deleted*.")
        if header is None:
            raise HubError(400, "Commit body must start with a {'key': 'header'} line holding the summary.")
        created = await run_in_threadpool(
            self.store.commit,
            repo,
            branch,
            operations,
            title=str(header.get("summary") or ""),
            message=str(header.get("description") or ""),
            author=caller.user if caller else "anonymous",
            parent_commit=header.get("parentCommit"),
        )
        return JSONResponse(
            {
                "success": True,
                "commitOid": created.sha,
                "commitUrl": f"{self._repo_url(request, repo)}/commit/{created.sha}",
                "hookOutput": "",
            }
        )

    async def _inline_file(self, value: dict[str, Any]) -> AddFile:
        path = check_path(str(value.get("path", "")))
        if value.get("encoding", "base64") != "base64":
            raise HubError(400, f"File {path!r}: only base64 encoding is supported.")
        try:
            content = base64.b64decode(value.get("content", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HubError(400, f"File {path!r}: content is not valid base64 ({exc}).") from exc
        entry = await run_in_threadpool(self.store.put_bytes, content)
        return AddFile(path, entry)

    def _lfs_file(self, value: dict[str, Any]) -> AddFile:
        path = check_path(str(value.get("path", "")))
        oid = value.get("oid")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256_RE.match(oid):
            raise HubError(400, f"LFS file {path!r} needs algo 'sha256' and a 64-hex 'oid'.")
        size = value.get("size")
        if size is None:  # copies name an existing object without its size
            size = self.store.blob_size(oid)
            if size is None:
                raise HubError(400, f"LFS file {path!r}: object {oid} is not in this registry; upload it first.")
        if not isinstance(size, int) or size < 0:
            raise HubError(400, f"LFS file {path!r}: 'size' must be a non-negative integer.")
        return AddFile(path, TreeEntry.for_lfs(oid, size))

    # -- LFS -----------------------------------------------------------------------------------
    def _sign(self, repo: Repo, oid: str, size: int, expires: int) -> str:
        message = f"{repo.type}:{repo.repo_id}:{oid}:{size}:{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    async def lfs_batch(self, request: Request, ns: str, name: str, kind: str | None = None) -> Response:
        """LFS batch API, upload only. PUT URLs carry a signature because the client sends them
        without Authorization."""
        repo = self._repo(request, kind, ns, name, write=True)
        data = await self._json(request)
        if data.get("operation") != "upload":
            raise HubError(400, "Only the LFS 'upload' operation is supported; download files through /resolve.")
        if "basic" not in data.get("transfers", ["basic"]):
            raise HubError(400, "Only the LFS 'basic' transfer is supported.")
        base = self._repo_url(request, repo)
        expires = int(time.time()) + LFS_UPLOAD_URL_TTL_S
        objects = []
        for obj in data.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "oid must be 64-hex sha256 and size an int"}})
                continue
            if self.store.has_blob(oid, size):
                objects.append({"oid": oid, "size": size})  # no actions: already here
                continue
            signature = self._sign(repo, oid, size, expires)
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {
                            "href": f"{base}.git/info/lfs/objects/upload/{oid}?size={size}&expires={expires}"
                            f"&sig={signature}",
                            "expires_in": LFS_UPLOAD_URL_TTL_S,
                        },
                        "verify": {"href": f"{base}.git/info/lfs/objects/verify"},
                    },
                }
            )
        return JSONResponse(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            headers={"Content-Type": _LFS_CONTENT_TYPE},
        )

    async def lfs_upload(self, request: Request, ns: str, name: str, oid: str, kind: str | None = None) -> Response:
        repo_type = self._repo_type(kind)
        query = request.query_params
        try:
            size, expires = int(query["size"]), int(query["expires"])
        except (KeyError, ValueError) as exc:
            raise HubError(403, "Upload URL is incomplete; request a new one from the LFS batch endpoint.") from exc
        repo = self.store.get_repo(repo_type, ns, name)
        expected = self._sign(repo, oid, size, expires)
        if not hmac.compare_digest(expected, query.get("sig", "")) or expires < time.time():
            raise HubError(403, "Upload URL signature is invalid or expired; request a new one (LFS batch).")
        if not self.store.has_blob(oid, size):
            writer = self.store.open_writer()
            try:
                async for chunk in request.stream():
                    writer.write(chunk)
                await run_in_threadpool(writer.finish, oid, size)
            except BaseException:
                writer.abort()
                raise
        return Response(status_code=200, headers={"ETag": f'"{oid}"'})

    async def lfs_verify(self, request: Request, ns: str, name: str, kind: str | None = None) -> Response:
        self._repo(request, kind, ns, name, write=True)
        data = await self._json(request)
        oid, size = data.get("oid"), data.get("size")
        if not isinstance(oid, str) or not self.store.has_blob(oid, size if isinstance(size, int) else None):
            raise HubError(404, f"LFS object {oid} ({size} bytes) was not received; upload it again.")
        return JSONResponse({"message": "Object verified"})

    # -- downloads -----------------------------------------------------------------------------
    async def resolve(
        self, request: Request, ns: str, name: str, rev: str, path: str, kind: str | None = None
    ) -> Response:
        """File bytes with the headers ``hf_hub_download`` reads. A branch or tag name answers a
        same-origin 307 to the commit sha, so HEAD and GET see the same revision."""
        repo = self._repo(request, kind, ns, name)
        sha = self.store.resolve(repo, rev)
        entry = self.store.get_commit(sha).tree.get(path)
        if entry is None:
            raise HubError(
                404,
                f"File {path!r} not found in {repo.repo_id} at {rev!r} (commit {sha}).",
                "EntryNotFound",
                headers={"X-Repo-Commit": sha},
            )
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.is_lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        if rev != sha:
            location = f"/{_URL_PREFIX[repo.type]}{repo.repo_id}/resolve/{sha}/{quote(path)}"
            return Response(status_code=307, headers={**headers, "Location": location})
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(self.store.blob_path(entry.sha256), headers=headers, media_type=media_type)


async def _ndjson(request: Request) -> AsyncIterator[dict[str, Any]]:
    """Parse a streamed NDJSON body line by line without re-copying a growing buffer."""
    pending: list[bytes] = []

    def parse(raw: bytes) -> dict[str, Any]:
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HubError(400, f"Commit body is not valid NDJSON: {exc}.") from exc
        if not isinstance(item, dict):
            raise HubError(400, "Each commit line must be a JSON object.")
        return item

    async for chunk in request.stream():
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            pending.append(chunk[start:newline])
            line = b"".join(pending)
            pending = []
            start = newline + 1
            if line.strip():
                yield parse(line)
        pending.append(chunk[start:])
    tail = b"".join(pending)
    if tail.strip():
        yield parse(tail)


def create_app(root: Path | str, *, lfs_threshold: int | None = None) -> Starlette:
    """The registry as an ASGI app serving the store under ``root`` (created if missing).

    ``lfs_threshold``: files of at least this many bytes are sent through LFS. ``None`` (default)
    inlines every file, which works for every client, including ones with ``hf_xet`` installed
    (they cannot be moved from Xet to LFS by the server). Set it (e.g. to ``HUB_LFS_THRESHOLD``)
    only when clients run with ``HF_HUB_DISABLE_XET=1``; large files then skip base64.
    """
    registry = RegistryApp(Path(root), lfs_threshold)
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    app = Starlette(routes=[Route("/{path:path}", registry.dispatch, methods=methods)])
    app.state.registry = registry
    return app


def serve(
    root: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    lfs_threshold: int | None = None,
    log_level: str = "info",
) -> None:
    """Serve the registry under ``root`` until interrupted (blocking)."""
    app = create_app(root, lfs_threshold=lfs_threshold)
    print(f"atlas-align registry: serving {Path(root).resolve()} at http://{host}:{port}", flush=True)
    print(f"  point clients at it with HF_ENDPOINT=http://{host}:{port}", flush=True)
    import uvicorn  # imported late: only the serving process needs it

    uvicorn.run(app, host=host, port=port, log_level=log_level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m atlas_align.registry.server.app",
        description="Hub-compatible registry server. Example: --root ./registry --port 8000",
    )
    parser.add_argument("--root", required=True, type=Path, help="folder holding the registry database and blobs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--lfs-threshold",
        type=int,
        default=None,
        help=f"send files of at least this many bytes through LFS (Hub: {HUB_LFS_THRESHOLD}); needs clients "
        "with HF_HUB_DISABLE_XET=1. Default: inline every file.",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--create-token", metavar="USER", help="print a new token for USER and exit")
    parser.add_argument("--read-only", action="store_true", help="with --create-token: a token that cannot write")
    args = parser.parse_args(argv)
    if args.create_token:
        print(create_token(args.root, args.create_token, write=not args.read_only))
        return 0
    serve(args.root, args.host, args.port, lfs_threshold=args.lfs_threshold, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
