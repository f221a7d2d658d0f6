"""HTTP handlers: the Hub API subset that ``huggingface_hub`` uses, routed on the raw path.

How a request runs (:meth:`Routes.dispatch`):

1. the route is matched on the *raw* path (revisions and tree paths arrive ``%2F``-quoted);
2. write endpoints check the token before a byte of the body is read;
3. the body is read up to the endpoint's limit (413 beyond), or streamed for commits and LFS PUTs;
4. the handler runs in a worker thread, never on the event loop, so a slow listing or a large
   tree cannot stall other requests;
5. any exception becomes a Hub error (4xx with ``X-Error-Code``); an unexpected one is logged and
   answered 500 — the fuzz suite holds that to zero.

Listings (models, tree, commits) are paginated with a ``Link: <...>; rel="next"`` header, which
the client follows, and stop early at the per-request time budget.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import logging
import mimetypes
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from atlas_align.errors import ConfigError
from atlas_align.registry.server.auth import Auth
from atlas_align.registry.server.cards import MAX_CARD_METADATA_BYTES, derive_tags, parse_card_data
from atlas_align.registry.server.lfs import LfsEndpoints
from atlas_align.registry.server.protocol import (
    URL_PREFIX,
    Call,
    HubError,
    Limits,
    as_hub_error,
    get_bool,
    get_size,
    get_str,
    parse_int,
    parse_json,
    read_body,
    repo_type_of,
    too_large,
)
from atlas_align.registry.server.store import (
    DEFAULT_BRANCH,
    AddFile,
    AlreadyExists,
    Commit,
    CommitOperation,
    CorruptBlob,
    DeleteFile,
    DeleteFolder,
    LRUCache,
    RegistryStore,
    Repo,
    TokenInfo,
    TreeEntry,
    check_path,
)

__all__ = ["HUB_LFS_THRESHOLD", "Routes"]

logger = logging.getLogger(__name__)

# The Hub's own rule: files above 10 MB go through LFS.
HUB_LFS_THRESHOLD = 10 * 1024 * 1024
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SHA1_RE = re.compile(r"[0-9a-f]{40}")
_SORT_KEYS = ("lastModified", "createdAt", "id", "downloads", "likes", "trendingScore")
# Base64 is decoded in slices of this many characters (a multiple of 4): memory stays flat.
_B64_SLICE = 4 * 1024 * 1024
_EXPAND_PAGE = 50


@dataclass(frozen=True)
class _Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    stream: bool = False  # async handler that reads the request itself
    write: bool = False  # needs a valid write token before the body is read
    body_limit: int | None = None


_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
_API_REPO = r"^/api/(?P<kind>models|datasets|spaces)/" + _REPO
_FILE_REPO = r"^(?:/(?P<kind>datasets|spaces))?/" + _REPO


@dataclass
class _Summary:
    """What listings need of a commit, computed once per sha (commits never change)."""

    card: dict[str, Any] | None
    tags: list[str] = field(default_factory=list)
    used_storage: int = 0


class Routes:
    """Request handlers over one :class:`RegistryStore`."""

    def __init__(self, store: RegistryStore, *, lfs_threshold: int | None, limits: Limits) -> None:
        self.store = store
        self.lfs_threshold = lfs_threshold
        self.limits = limits
        self.auth = Auth(store)
        self.lfs = LfsEndpoints(store, self.auth, limits)
        self._summaries = LRUCache(8192)
        self.routes: list[_Route] = []
        add = self._add
        add("GET", r"^/api/whoami-v2", self.whoami)
        add("GET", r"^/api/agent-harnesses", self.not_provided)
        add("POST", r"^/api/validate-yaml", self.validate_yaml)
        add("POST", r"^/api/repos/create", self.create_repo, write=True)
        add("DELETE", r"^/api/repos/delete", self.delete_repo, write=True)
        add("POST", r"^/api/repos/move", self.unsupported)
        add("GET", r"^/api/(?P<kind>models|datasets|spaces)", self.list_repos)
        add("GET", _API_REPO, self.repo_info)
        add("GET", _API_REPO + r"/revision/(?P<rev>[^/]+)", self.repo_info)
        add("GET", _API_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self.tree)
        add("POST", _API_REPO + r"/paths-info/(?P<rev>[^/]+)", self.paths_info)
        add("GET", _API_REPO + r"/refs", self.list_refs)
        add("GET", _API_REPO + r"/commits/(?P<rev>[^/]+)", self.list_commits)
        add("POST", _API_REPO + r"/preupload/(?P<rev>[^/]+)", self.preupload, write=True)
        add("POST", _API_REPO + r"/commit/(?P<rev>[^/]+)", self.commit, stream=True, write=True)
        add("POST", _API_REPO + r"/tag/(?P<rev>[^/]+)", self.create_tag, write=True)
        add("DELETE", _API_REPO + r"/tag/(?P<rev>[^/]+)", self.delete_tag, write=True)
        add("POST", _API_REPO + r"/branch/(?P<rev>[^/]+)", self.create_branch, write=True)
        add("DELETE", _API_REPO + r"/branch/(?P<rev>[^/]+)", self.delete_branch, write=True)
        add("PUT", _API_REPO + r"/settings", self.update_settings, write=True)
        add("GET", _API_REPO + r"/xet-(?:read|write)-token/(?P<rev>[^/]+)", self.xet_token)
        add("GET", _API_REPO + r"/discussions", self.list_discussions)
        add("POST", _API_REPO + r"/discussions(?:/.*)?", self.unsupported)
        add("GET", _API_REPO + r"/discussions/.+", self.unsupported)
        add("GET HEAD", _FILE_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve)
        add("POST", _FILE_REPO + r"\.git/info/lfs/objects/batch", self.lfs.batch, write=True)
        add("PUT", _FILE_REPO + r"\.git/info/lfs/objects/upload/(?P<oid>[0-9a-f]{64})", self.lfs.upload, stream=True)
        add("POST", _FILE_REPO + r"\.git/info/lfs/objects/verify", self.lfs.verify, write=True)

    def _add(self, methods: str, pattern: str, handler: Callable[..., Any], *, stream: bool = False,
             write: bool = False, body_limit: int | None = None) -> None:
        self.routes.append(
            _Route(frozenset(methods.split()), re.compile(pattern + "$"), handler, stream, write, body_limit)
        )

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        """Route on the raw path: Starlette would decode ``%2F`` inside revisions before matching."""
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1").split("?", 1)[0]
        method = request.method.upper()
        try:
            route, params = self._match(method, raw_path)
            if route.write:  # no body is read for callers that could not write anyway
                caller = await run_in_threadpool(self.auth.caller, request.headers)
                self.auth.require_write(caller)
            if route.stream:
                return await route.handler(request, **params)
            body = await read_body(request, route.body_limit or self.limits.max_json_bytes)
            return await run_in_threadpool(route.handler, Call(request, body), **params)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as a Hub error
            hub_error = as_hub_error(exc)
            if hub_error is None:
                logger.exception("Internal error on %s %s", method, raw_path[:300])
                hub_error = HubError(500, f"Internal registry error ({type(exc).__name__}); see the server log.",
                                     "InternalError")
            return hub_error.response()

    def _match(self, method: str, raw_path: str) -> tuple[_Route, dict[str, str]]:
        allowed: set[str] = set()
        for route in self.routes:
            match = route.pattern.match(raw_path)
            if match is None:
                continue
            if method not in route.methods:
                allowed |= route.methods
                continue
            return route, {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
        if allowed:
            raise HubError(405, f"{method} is not supported on {raw_path[:200]}; use {', '.join(sorted(allowed))}.")
        raise HubError(404, f"Unknown endpoint {method} {raw_path[:200]}: this registry implements the Hub API "
                       "subset used by huggingface_hub (see `atlas-align registry serve --help`).")

    # -- shared helpers ----------------------------------------------------------------------
    def _caller(self, call: Call) -> TokenInfo | None:
        return self.auth.caller(call.headers)

    def _repo(self, call: Call, kind: str | None, ns: str, name: str, *, write: bool = False) -> Repo:
        return self.auth.repo(self._caller(call), repo_type_of(kind), ns, name, write=write)

    def _repo_url(self, base_url: str, repo: Repo) -> str:
        return f"{base_url}/{URL_PREFIX[repo.type]}{repo.repo_id}"

    def _summary(self, commit_sha: str) -> _Summary:
        cached = self._summaries.get(commit_sha)
        if cached is None:
            commit = self.store.get_commit(commit_sha)
            card = self._card(commit)
            cached = _Summary(card=card, tags=derive_tags(card),
                              used_storage=sum(entry.size for entry in commit.tree.values()))
            self._summaries.put(commit_sha, cached)
        return cached

    def _card(self, commit: Commit) -> dict[str, Any] | None:
        """Card data of a commit's README; a broken or hostile card reads as no card."""
        entry = commit.tree.get("README.md")
        if entry is None:
            return None
        try:
            head = self.store.read_blob(entry.sha256, limit=MAX_CARD_METADATA_BYTES + 4096)
            return parse_card_data(head.decode("utf-8", errors="replace"))
        except (ConfigError, CorruptBlob, OSError):
            return None

    @staticmethod
    def _next_link(call: Call, cursor: str) -> dict[str, str]:
        pairs = [(key, value) for key, value in call.query.multi_items() if key != "cursor"]
        pairs.append(("cursor", cursor))
        return {"Link": f'<{call.base_url}{call.path}?{urlencode(pairs)}>; rel="next"'}

    def _page_size(self, call: Call, default: int | None = None) -> int:
        page = default or self.limits.page_size
        return parse_int(call.query.get("limit"), "limit", default=page, low=1, high=page)

    # -- misc --------------------------------------------------------------------------------
    def not_provided(self, call: Call) -> Response:
        raise HubError(404, "Not provided by this registry.")

    def unsupported(self, call: Call, **_: str) -> Response:
        raise HubError(400, "Not supported by this registry (pull requests, discussions and repo moves are Hub-only).")

    def xet_token(self, call: Call, **_: str) -> Response:
        raise HubError(
            400,
            "This registry does not speak Xet. Set HF_HUB_DISABLE_XET=1 before importing huggingface_hub so "
            "large files go through LFS, or run the server without --lfs-threshold so every file is inlined.",
        )

    def list_discussions(self, call: Call, kind: str, ns: str, name: str) -> Response:
        self._repo(call, kind, ns, name)
        return JSONResponse({"discussions": [], "count": 0, "start": 0, "numClosedDiscussions": 0})

    def whoami(self, call: Call) -> Response:
        caller = self._caller(call)
        if caller is None:
            raise HubError(401, "Not authenticated: pass a token (HfApi(token=...) or HF_TOKEN).", "Unauthorized")
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

    def validate_yaml(self, call: Call) -> Response:
        """Always answer JSON: the client reads the body before it checks the status."""
        try:
            content = get_str(call.json(), "content", default="", max_len=self.limits.max_json_bytes) or ""
            parse_card_data(content)
        except (HubError, ConfigError) as exc:
            message = exc.message if isinstance(exc, HubError) else str(exc)
            return JSONResponse({"errors": [{"message": message}], "warnings": []}, status_code=400,
                                headers={"X-Error-Code": "BadRequest"})
        return JSONResponse({"errors": [], "warnings": []})

    # -- repos -------------------------------------------------------------------------------
    def create_repo(self, call: Call) -> Response:
        data = call.json()
        caller = self._caller(call)
        name = get_str(data, "name", required=True, max_len=300)
        if "/" in name:  # older clients send the full id as name
            namespace, name = name.split("/", 1)
        else:  # push_to_hub("name") sends organization=null: the token's user owns it
            namespace = get_str(data, "organization", max_len=200) or (caller.user if caller else "")
        repo_type = repo_type_of(data.get("type"))
        caller = self.auth.require_write(caller, namespace)
        private = get_bool(data, "private")
        visibility = get_str(data, "visibility", max_len=20)
        if visibility not in (None, "private", "public"):
            raise HubError(400, f"visibility must be 'private' or 'public', got {visibility!r}.")
        private = visibility == "private" if visibility is not None else bool(private)
        url = f"{call.base_url}/{URL_PREFIX[repo_type]}{namespace}/{name}"
        try:
            repo = self.store.create_repo(repo_type, namespace, name, private=private, author=caller.user)
        except AlreadyExists as exc:
            # exist_ok=True swallows the 409 but still reads "url" from the body.
            existing = self.store.get_repo(repo_type, namespace, name)
            url = self._repo_url(call.base_url, existing)
            return JSONResponse({"error": f"You already created this {repo_type} repo: {exc}", "url": url}, 409,
                                headers={"X-Error-Code": "Conflict"})
        return JSONResponse({"url": self._repo_url(call.base_url, repo), "name": repo.repo_id, "id": repo.repo_id})

    def delete_repo(self, call: Call) -> Response:
        data = call.json()
        caller = self._caller(call)
        name = get_str(data, "name", required=True, max_len=300)
        if "/" in name:
            namespace, name = name.split("/", 1)
        else:
            namespace = get_str(data, "organization", max_len=200) or (caller.user if caller else "")
        repo = self._repo(call, data.get("type"), namespace, name, write=True)
        self.store.delete_repo(repo)
        return JSONResponse({})

    def update_settings(self, call: Call, kind: str, ns: str, name: str) -> Response:
        repo = self._repo(call, kind, ns, name, write=True)
        data = call.json()
        if data.get("gated") not in (None, False, "false"):
            raise HubError(400, "Gated repos are not supported by this registry; use private=True instead.")
        private = get_bool(data, "private")
        visibility = get_str(data, "visibility", max_len=20)
        if visibility is not None:
            if visibility not in ("private", "public"):
                raise HubError(400, f"visibility must be 'private' or 'public', got {visibility!r}.")
            private = visibility == "private"
        if private is not None:
            self.store.set_private(repo, private)
        return JSONResponse({})

    # -- info and listings ---------------------------------------------------------------------
    @staticmethod
    def _siblings(tree: dict[str, TreeEntry], blobs: bool) -> list[dict[str, Any]]:
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

    def _info(self, repo: Repo, sha: str, date: str, *, siblings: bool, blobs: bool = False) -> dict[str, Any]:
        summary = self._summary(sha)
        card = summary.card
        info: dict[str, Any] = {
            "_id": self.auth.opaque_id(repo),
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": sha,
            "lastModified": date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(summary.tags),
            "cardData": card,
            "usedStorage": summary.used_storage,
        }
        if repo.type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = (card or {}).get("library_name")
            info["pipeline_tag"] = (card or {}).get("pipeline_tag")
            info["spaces"] = []
        if siblings:
            info["siblings"] = self._siblings(self.store.get_commit(sha).tree, blobs)
        return info

    @staticmethod
    def _expand(info: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        """``expand=`` asks for exactly these properties (plus the id), as on the Hub."""
        keep = {"_id", "id", *expand}
        return {key: value for key, value in info.items() if key in keep}

    def repo_info(self, call: Call, kind: str, ns: str, name: str, rev: str = DEFAULT_BRANCH) -> Response:
        repo = self._repo(call, kind, ns, name)
        commit = self.store.get_commit(self.store.resolve(repo, rev))
        info = self._info(repo, commit.sha, commit.date, siblings=True, blobs=call.flag("blobs"))
        expand = call.query.getlist("expand")
        return JSONResponse(self._expand(info, expand) if expand else info)

    def list_repos(self, call: Call, kind: str) -> Response:
        """One page of repos, sorted in SQL, filtered here; ``Link`` points at the next page.
        A page also ends at the time budget, so no listing holds a worker for long."""
        repo_type = repo_type_of(kind)
        caller = self._caller(call)
        query = call.query
        filters = [value for value in query.getlist("filter") if value]
        searches = [value.lower() for value in query.getlist("search") if value]
        author = query.get("author")
        pipeline_tag = query.get("pipeline_tag")
        full = call.flag("full")
        with_card = full or call.flag("cardData")
        expand = query.getlist("expand")
        sort = query.get("sort") or "lastModified"
        if sort not in _SORT_KEYS:
            raise HubError(400, f"Unknown sort {sort[:40]!r}; use one of {', '.join(_SORT_KEYS)}.")
        # downloads, likes and trendingScore are not counted here (always 0): ties fall back to id.
        order = sort if sort in ("lastModified", "createdAt") else "id"
        page_size = self._page_size(call)
        start = parse_int(query.get("cursor"), "cursor", default=0, low=0, high=2**62)
        deadline = time.monotonic() + self.limits.time_budget_s
        results = []
        index = start
        # Heads are read from SQL in batches from the cursor on (one more than asked, to know if
        # there is a next page), so a page costs what it shows, not the number of repos.
        batch = max(page_size, 64)
        heads = self.store.list_heads(repo_type, order, offset=index, limit=batch + 1)
        offset = index
        while index - offset < len(heads) and len(results) < page_size:
            if time.monotonic() > deadline and index > start:
                break
            if index - offset == batch:  # the look-ahead row: fetch the next batch
                offset = index
                heads = self.store.list_heads(repo_type, order, offset=index, limit=batch + 1)
                continue
            head = heads[index - offset]
            index += 1
            repo = head.repo
            if not self.auth.can_read(caller, repo):
                continue
            if author and repo.namespace.lower() != author.lower():
                continue
            if searches and not any(term in repo.repo_id.lower() for term in searches):
                continue
            info = self._info(repo, head.sha, head.date, siblings=full or "siblings" in expand)
            if not all(tag in info["tags"] for tag in filters):
                continue
            if pipeline_tag and info.get("pipeline_tag") != pipeline_tag:
                continue
            if not with_card and "cardData" not in expand:
                info.pop("cardData")
            results.append(self._expand(info, expand) if expand else info)
        headers = self._next_link(call, str(index)) if index - offset < len(heads) else {}
        return JSONResponse(results, headers=headers)

    # -- tree and paths-info -------------------------------------------------------------------
    @staticmethod
    def _folder_oid(tree: dict[str, TreeEntry], folder: str) -> str | None:
        prefix = folder + "/"
        children = sorted((path, entry.oid) for path, entry in tree.items() if path.startswith(prefix))
        if not children:
            return None
        return hashlib.sha1(json.dumps(children).encode()).hexdigest()

    def _entries(self, tree: dict[str, TreeEntry], paths: list[str]) -> list[dict[str, Any]]:
        """Tree entries for ``paths`` (files or folders; missing ones skipped), in one pass over
        the tree for all folders at once."""
        folders: dict[str, list[tuple[str, str]]] = {}
        wanted = {path for path in paths if path not in tree}
        if wanted:
            for file_path, entry in tree.items():
                parts = file_path.split("/")
                for depth in range(1, len(parts)):
                    folder = "/".join(parts[:depth])
                    if folder in wanted:
                        folders.setdefault(folder, []).append((file_path, entry.oid))
        items = []
        for path in paths:
            entry = tree.get(path)
            if entry is not None:
                item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
                if entry.is_lfs:
                    item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
                items.append(item)
            elif path in folders:
                oid = hashlib.sha1(json.dumps(sorted(folders[path])).encode()).hexdigest()
                items.append({"type": "directory", "oid": oid, "size": 0, "path": path})
        return items

    def _add_last_commits(self, items: list[dict[str, Any]], head: str) -> None:
        """``expand=true``: the newest commit that changed each path. At most
        ``limits.expand_history`` commits are walked; older changes are credited to the oldest
        commit walked."""
        pending = {item["path"]: item for item in items}
        history = self.store.history(head, limit=self.limits.expand_history)
        for newer, older in zip(history, history[1:], strict=False):
            if not pending:
                break
            changed: set[str] = set()
            for path in newer.tree.keys() ^ older.tree.keys():
                changed.add(path)
            for path, entry in newer.tree.items():
                other = older.tree.get(path)
                if other is not None and other != entry:
                    changed.add(path)
            touched = set(changed)
            for path in changed:
                parts = path.split("/")
                touched.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
            for path in [path for path in pending if path in touched]:
                pending.pop(path)["lastCommit"] = {"id": newer.sha, "title": newer.title, "date": newer.date}
        last = history[-1]
        for item in pending.values():
            item["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}

    def tree(self, call: Call, kind: str, ns: str, name: str, rev: str, path: str = "") -> Response:
        repo = self._repo(call, kind, ns, name)
        sha = self.store.resolve(repo, rev)
        tree = self.store.get_commit(sha).tree
        base = path.strip("/")
        prefix = base + "/" if base else ""
        recursive = call.flag("recursive")
        paths: set[str] = set()
        for file_path in tree:
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            if recursive:
                paths.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
            else:
                paths.add(prefix + parts[0])
        if base and not paths:
            what = "is a file, not a folder" if base in tree else "does not exist"
            raise HubError(404, f"Path {base[:200]!r} {what} in {repo.repo_id}@{rev[:100]}.", "EntryNotFound")
        expand = call.flag("expand")
        ordered = sorted(paths)
        start = parse_int(call.query.get("cursor"), "cursor", default=0, low=0, high=len(ordered))
        end = start + self._page_size(call, _EXPAND_PAGE if expand else None)
        items = self._entries(tree, ordered[start:end])
        if expand:
            self._add_last_commits(items, sha)
        headers = self._next_link(call, str(end)) if end < len(ordered) else {}
        return JSONResponse(items, headers=headers)

    def paths_info(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(call, kind, ns, name)
        sha = self.store.resolve(repo, rev)
        tree = self.store.get_commit(sha).tree
        if call.headers.get("content-type", "").startswith("application/json"):
            data = call.json()
            raw_paths = data.get("paths", [])
            expand = data.get("expand") in (True, "true", "True", 1)
        else:
            try:
                form = parse_qs(call.body.decode("utf-8"), keep_blank_values=True, max_num_fields=20_000)
            except (UnicodeDecodeError, ValueError) as exc:
                raise HubError(400, f"paths-info body must be a UTF-8 form (paths=a&paths=b): {exc}.") from exc
            raw_paths, expand = form.get("paths", []), form.get("expand", [""])[0].lower() in ("1", "true")
        if isinstance(raw_paths, str):
            raw_paths = [raw_paths]
        if not isinstance(raw_paths, list) or not all(isinstance(p, str) for p in raw_paths):
            raise HubError(400, "'paths' must be a list of strings.")
        if len(raw_paths) > self.limits.page_size * 10:
            raise HubError(400, f"Ask for at most {self.limits.page_size * 10} paths per request.")
        items = self._entries(tree, list(dict.fromkeys(p.strip("/") for p in raw_paths)))
        if expand:
            self._add_last_commits(items, sha)
        return JSONResponse(items)

    # -- refs and commits ----------------------------------------------------------------------
    def list_refs(self, call: Call, kind: str, ns: str, name: str) -> Response:
        repo = self._repo(call, kind, ns, name)

        def refs(kind_: str, prefix: str) -> list[dict[str, str]]:
            return [
                {"name": ref, "ref": f"{prefix}{ref}", "targetCommit": sha}
                for ref, sha in self.store.refs(repo, kind_).items()
            ]

        return JSONResponse(
            {"branches": refs("branch", "refs/heads/"), "converts": [], "tags": refs("tag", "refs/tags/"),
             "pullRequests": []}
        )

    def list_commits(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(call, kind, ns, name)
        formatted = "formatted" in call.query.getlist("expand[]") + call.query.getlist("expand")
        start = call.query.get("cursor") or self.store.resolve(repo, rev)
        if not _SHA1_RE.fullmatch(start) or not self.store.commit_in_repo(repo, start):
            raise HubError(400, "Invalid cursor: follow the Link header of the previous page.")
        page_size = self._page_size(call)
        commits = self.store.history_meta(start, page_size + 1)
        items = []
        for commit in commits[:page_size]:
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
        headers = self._next_link(call, commits[page_size].sha) if len(commits) > page_size else {}
        return JSONResponse(items, headers=headers)

    def create_tag(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(call, kind, ns, name, write=True)
        data = call.json()
        tag = get_str(data, "tag", required=True, max_len=200)
        message = get_str(data, "message", max_len=65536)
        sha = self.store.create_ref(repo, "tag", tag, rev, message)
        return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": sha})

    def delete_tag(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(call, kind, ns, name, write=True)
        self.store.delete_ref(repo, "tag", rev)
        return JSONResponse({})

    def create_branch(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(call, kind, ns, name, write=True)
        start = get_str(call.json(), "startingPoint", max_len=256) or DEFAULT_BRANCH
        sha = self.store.create_ref(repo, "branch", rev, start)
        return JSONResponse({"name": rev, "ref": f"refs/heads/{rev}", "targetCommit": sha})

    def delete_branch(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        repo = self._repo(call, kind, ns, name, write=True)
        self.store.delete_ref(repo, "branch", rev)
        return JSONResponse({})

    # -- uploads -------------------------------------------------------------------------------
    def _branch_for_write(self, query: Any, repo: Repo, rev: str) -> str:
        if query.get("create_pr", "").lower() in ("1", "true", "yes"):
            raise HubError(400, "Pull requests are not supported by this registry; commit to a branch instead.")
        branch = rev.removeprefix("refs/heads/")
        if self.store.branch_head(repo, branch) is None:
            raise HubError(
                404,
                f"Branch {branch[:100]!r} not found in {repo.repo_id}; uploads go to an existing branch "
                "(create it with create_branch).",
                "RevisionNotFound",
            )
        return branch

    def _upload_mode(self, size: int) -> str:
        if self.lfs_threshold is None or size == 0 or size < self.lfs_threshold:
            return "regular"
        return "lfs"

    def preupload(self, call: Call, kind: str, ns: str, name: str, rev: str) -> Response:
        """Decide regular (inline base64) vs LFS per file, by size only (see ``lfs_threshold``)."""
        repo = self._repo(call, kind, ns, name, write=True)
        branch = self._branch_for_write(call.query, repo, rev)
        tree = self.store.get_commit(self.store.branch_head(repo, branch) or "").tree
        files = call.json().get("files")
        if not isinstance(files, list) or len(files) > self.limits.max_commit_operations:
            raise HubError(400, "Preupload body needs a 'files' list of {path, sample, size} "
                           f"(at most {self.limits.max_commit_operations}).")
        answer = []
        for item in files:
            if not isinstance(item, dict):
                raise HubError(400, "Each preupload file must be an object {path, sample, size}.")
            path = get_str(item, "path", required=True)
            size = get_size(item)
            entry = tree.get(path)
            # A file whose blob was quarantined (or lost) is not "unchanged": the client must send
            # it again, which is how `registry fsck` findings are repaired.
            if entry is not None and not self.store.has_blob(entry.sha256, entry.size):
                entry = None
            oid = None if entry is None else (entry.sha256 if entry.is_lfs else entry.oid)
            answer.append({"path": path, "uploadMode": self._upload_mode(size), "shouldIgnore": False, "oid": oid})
        return JSONResponse({"files": answer})

    async def commit(self, request: Request, kind: str, ns: str, name: str, rev: str) -> Response:
        """NDJSON commit, streamed: each line is parsed and its content stored as it arrives."""
        call = Call(request, b"")
        repo = await run_in_threadpool(self._repo, call, kind, ns, name, write=True)
        caller = await run_in_threadpool(self._caller, call)
        branch = await run_in_threadpool(self._branch_for_write, call.query, repo, rev)
        header: dict[str, Any] | None = None
        operations: list[CommitOperation] = []
        async for line in self._ndjson(request):
            key, value = await run_in_threadpool(_parse_commit_line, line)
            del line
            if key == "header":
                header = value
                continue
            if len(operations) >= self.limits.max_commit_operations:
                raise HubError(400, f"A commit may change at most {self.limits.max_commit_operations} files; "
                               "split it into several commits.")
            operations.append(await run_in_threadpool(self._operation, repo, key, value))
        if header is None:
            raise HubError(400, "Commit body must start with a {'key': 'header'} line holding the summary.")
        parent = header.get("parentCommit")
        if parent is not None and not isinstance(parent, str):
            raise HubError(400, "'parentCommit' must be a commit sha string.")
        created = await run_in_threadpool(
            lambda: self.store.commit(
                repo,
                branch,
                operations,
                title=_text(header.get("summary"), "summary"),
                message=_text(header.get("description"), "description"),
                author=caller.user if caller else "anonymous",
                parent_commit=parent,
            )
        )
        return JSONResponse(
            {
                "success": True,
                "commitOid": created.sha,
                "commitUrl": f"{self._repo_url(call.base_url, repo)}/commit/{created.sha}",
                "hookOutput": "",
            }
        )

    async def _ndjson(self, request: Request) -> AsyncIterator[bytes]:
        """Lines of a streamed NDJSON body, each at most ``max_commit_line_bytes``, the whole at
        most ``max_commit_bytes``."""
        limits = self.limits
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_commit_bytes:
            raise too_large(limits.max_commit_bytes)
        pending: list[bytes] = []
        pending_size = 0
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limits.max_commit_bytes:
                raise too_large(limits.max_commit_bytes)
            start = 0
            while (newline := chunk.find(b"\n", start)) >= 0:
                pending.append(chunk[start:newline])
                line = b"".join(pending)
                pending, pending_size = [], 0
                start = newline + 1
                if len(line) > limits.max_commit_line_bytes:
                    raise _line_too_long(limits.max_commit_line_bytes)
                if line.strip():
                    yield line
            pending.append(chunk[start:])
            pending_size += len(chunk) - start
            if pending_size > limits.max_commit_line_bytes:
                raise _line_too_long(limits.max_commit_line_bytes)
        tail = b"".join(pending)
        if tail.strip():
            yield tail

    def _operation(self, repo: Repo, key: str, value: dict[str, Any]) -> CommitOperation:
        if key == "file":
            return self._inline_file(repo, value)
        if key == "lfsFile":
            return self._lfs_file(repo, value)
        if key == "deletedFile":
            return DeleteFile(check_path(get_str(value, "path", required=True)))
        if key == "deletedFolder":
            return DeleteFolder(check_path((get_str(value, "path", required=True) or "").rstrip("/")))
        raise HubError(400, f"Unknown commit line key {str(key)[:40]!r}; expected header, file, lfsFile, deleted*.")

    def _inline_file(self, repo: Repo, value: dict[str, Any]) -> AddFile:
        path = check_path(get_str(value, "path", required=True))
        if value.get("encoding", "base64") != "base64":
            raise HubError(400, f"File {path!r}: only base64 encoding is supported.")
        content = value.get("content", "")
        if not isinstance(content, str) or len(content) % 4 or not content.isascii():
            raise HubError(400, f"File {path!r}: content is not valid base64 (padded, no whitespace).")
        padding = len(content) - len(content.rstrip("="))
        if padding > 2:
            raise HubError(400, f"File {path!r}: content is not valid base64 (padded, no whitespace).")
        size = len(content) // 4 * 3 - padding
        return AddFile(path, self.store.put_chunks(_b64_chunks(content, path), size, repo))

    def _lfs_file(self, repo: Repo, value: dict[str, Any]) -> AddFile:
        """An LFS pointer: the object must belong to this repo. ``size`` may be left out only by
        copies of an object the repo already has (the client omits it there)."""
        path = check_path(get_str(value, "path", required=True))
        oid = value.get("oid")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256_RE.fullmatch(oid):
            raise HubError(400, f"LFS file {path!r} needs algo 'sha256' and a 64-hex 'oid'.")
        size = get_size(value, required=False)
        known = self.store.repo_object_size(repo, oid)
        if known is None:
            raise HubError(
                400,
                f"LFS file {path!r}: object {oid} was never uploaded to {repo.repo_id}. Upload it first (LFS batch "
                "+ PUT); content of other repos cannot be referenced by hash.",
                "ObjectNotInRepo",
            )
        if size is not None and size != known:
            raise HubError(400, f"LFS file {path!r}: size {size} does not match the uploaded object ({known} bytes).")
        return AddFile(path, TreeEntry.for_lfs(oid, known))

    # -- downloads -----------------------------------------------------------------------------
    def resolve(self, call: Call, ns: str, name: str, rev: str, path: str, kind: str | None = None) -> Response:
        """File bytes with the headers ``hf_hub_download`` reads. A branch or tag name answers a
        same-origin 307 to the commit sha, so HEAD and GET see the same revision. A blob whose bytes
        no longer match its hash is refused (and quarantined), never served."""
        repo = self._repo(call, kind, ns, name)
        sha = self.store.resolve(repo, rev)
        entry = self.store.get_commit(sha).tree.get(path)
        if entry is None:
            raise HubError(
                404,
                f"File {path[:300]!r} not found in {repo.repo_id} at {rev[:100]!r} (commit {sha}).",
                "EntryNotFound",
                headers={"X-Repo-Commit": sha},
            )
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.is_lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        if rev != sha:
            location = f"/{URL_PREFIX[repo.type]}{repo.repo_id}/resolve/{sha}/{quote(path)}"
            return Response(status_code=307, headers={**headers, "Location": location})
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if call.request.method == "HEAD":
            return FileResponse(self.store.blob_path(entry.sha256), headers=headers, media_type=media_type)
        return FileResponse(self.store.verified_blob_path(entry.sha256), headers=headers, media_type=media_type)


def _parse_commit_line(line: bytes) -> tuple[str, dict[str, Any]]:
    item = parse_json(line, "A commit line")
    if not isinstance(item, dict):
        raise HubError(400, "Each commit line must be a JSON object {key, value}.")
    key, value = item.get("key"), item.get("value")
    if not isinstance(key, str) or not isinstance(value, dict):
        raise HubError(400, f"Commit line {str(key)[:40]!r} needs a string 'key' and a 'value' object.")
    return key, value


def _b64_chunks(content: str, path: str) -> Iterator[bytes]:
    for start in range(0, len(content), _B64_SLICE):
        try:
            yield base64.b64decode(content[start:start + _B64_SLICE], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HubError(400, f"File {path!r}: content is not valid base64 ({exc}).") from exc


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HubError(400, f"Commit {what!r} must be a string.")
    if len(value) > 65536:
        raise HubError(400, f"Commit {what!r} is longer than 65536 characters.")
    return value


def _line_too_long(limit: int) -> HubError:
    return HubError(413, f"A commit line is larger than {limit} bytes: send large files through LFS "
                    "(run the server with --lfs-threshold and clients with HF_HUB_DISABLE_XET=1).",
                    "PayloadTooLarge")
