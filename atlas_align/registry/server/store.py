"""Storage behind the registry server: SQLite for metadata, a content-addressed blob folder for bytes.

Why this split: file contents are immutable and large, so they live on disk named by their
sha256 (``root/blobs/ab/cdef...``) and are written through a temporary file and ``os.replace``;
a crash never leaves a half-written blob under a real name. Everything that changes (repos,
commits, branches, tags, tokens) lives in one SQLite file, so a commit becomes visible in a single
transaction, and only after every blob it references exists. A failed upload therefore leaves the
previous revision exactly as it was.

Layout under ``root``::

    registry.sqlite3    repos / commits / refs / tokens / meta
    blobs/ab/cdef...    file contents by sha256 (regular and LFS alike)
    tmp/                blobs being written (same filesystem, so os.replace is atomic)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atlas_align.errors import (
    ArtifactNotFound,
    AtlasAlignError,
    AuthError,
    ConfigError,
    IntegrityError,
)

__all__ = [
    "AddFile",
    "AlreadyExists",
    "Commit",
    "DeleteFile",
    "DeleteFolder",
    "EntryNotFound",
    "ParentMismatch",
    "RegistryStore",
    "Repo",
    "RepoNotFound",
    "RevisionNotFound",
    "TokenInfo",
    "TreeEntry",
    "create_token",
    "git_blob_oid",
    "lfs_pointer",
]

DB_FILENAME = "registry.sqlite3"
DEFAULT_BRANCH = "main"
REPO_TYPES = ("model", "dataset")
# Namespaces that would collide with URL prefixes of the Hub API ("/datasets/ns/name/...").
RESERVED_NAMESPACES = frozenset({"api", "datasets", "spaces", "models", "kernels", "buckets", "docs"})
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Written by the initial commit, like the Hub does, so file listings look the same as there.
_INITIAL_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pth filter=lfs diff=lfs merge=lfs -text\n"
    b"*.npy filter=lfs diff=lfs merge=lfs -text\n"
    b"*.npz filter=lfs diff=lfs merge=lfs -text\n"
    b"*.gguf filter=lfs diff=lfs merge=lfs -text\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    private     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    UNIQUE (type, namespace, name)
);
CREATE TABLE IF NOT EXISTS commits (
    sha      TEXT PRIMARY KEY,
    repo_id  INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    parent   TEXT,
    title    TEXT NOT NULL,
    message  TEXT NOT NULL,
    author   TEXT NOT NULL,
    date     TEXT NOT NULL,
    tree     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commits_repo ON commits (repo_id);
CREATE TABLE IF NOT EXISTS refs (
    repo_id  INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('branch', 'tag')),
    name     TEXT NOT NULL,
    sha      TEXT NOT NULL,
    message  TEXT,
    PRIMARY KEY (repo_id, kind, name)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash  TEXT PRIMARY KEY,
    user        TEXT NOT NULL,
    write       INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"""


# ----------------------------------------------------------------------------- errors
class RepoNotFound(ArtifactNotFound):
    """The repo does not exist, or is private and the caller may not see it."""


class RevisionNotFound(ArtifactNotFound):
    """The branch, tag or commit sha does not exist in this repo."""


class EntryNotFound(ArtifactNotFound):
    """The file or folder does not exist at this revision."""


class AlreadyExists(AtlasAlignError, FileExistsError):
    """A repo, branch or tag with this name exists already."""


class ParentMismatch(ConfigError):
    """The commit was prepared against a parent that is no longer the branch head."""


# ----------------------------------------------------------------------------- values
@dataclass(frozen=True)
class TreeEntry:
    """One file of a commit's tree. ``oid`` is the git blob sha1 (of the pointer file for LFS)."""

    sha256: str
    size: int
    is_lfs: bool
    oid: str

    @property
    def etag(self) -> str:
        """What the Hub sends as (linked) ETag: sha256 for LFS files, git sha1 otherwise."""
        return self.sha256 if self.is_lfs else self.oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "is_lfs": self.is_lfs, "oid": self.oid}

    @classmethod
    def from_json(cls, data: dict) -> TreeEntry:
        return cls(sha256=data["sha256"], size=int(data["size"]), is_lfs=bool(data["is_lfs"]), oid=data["oid"])

    @classmethod
    def for_content(cls, data: bytes) -> TreeEntry:
        """Entry of a regular (non-LFS) file held in memory."""
        return cls(sha256=hashlib.sha256(data).hexdigest(), size=len(data), is_lfs=False, oid=git_blob_oid(data))

    @classmethod
    def for_lfs(cls, sha256: str, size: int) -> TreeEntry:
        return cls(sha256=sha256, size=size, is_lfs=True, oid=git_blob_oid(lfs_pointer(sha256, size)))


@dataclass(frozen=True)
class Repo:
    id: int
    type: str
    namespace: str
    name: str
    private: bool
    created_at: str

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Commit:
    sha: str
    repo_id: int
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    tree: dict[str, TreeEntry]


@dataclass(frozen=True)
class TokenInfo:
    user: str
    write: bool


@dataclass(frozen=True)
class AddFile:
    """Add or replace ``path`` with a blob that must already be in the blob store."""

    path: str
    entry: TreeEntry


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


CommitOperation = AddFile | DeleteFile | DeleteFolder


# ----------------------------------------------------------------------------- helpers
def utc_now() -> str:
    """The Hub's date format: ``2024-01-01T00:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_oid(data: bytes) -> str:
    """Git's blob id; the Hub's ETag for regular files, so it must be a pure function of content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def check_name(value: str, what: str) -> str:
    """Repo names and namespaces follow the Hub's rules closely enough for ids to round-trip."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value or "--" in value:
        raise ConfigError(
            f"Invalid {what} {value!r}: use letters, digits, '-', '_' or '.', at most 96 characters, "
            "not starting or ending with '-' or '.'."
        )
    if value.endswith(".git"):
        raise ConfigError(f"Invalid {what} {value!r}: it may not end with '.git'.")
    return value


def check_path(path: str) -> str:
    """Reject paths that could escape the repo or confuse git (``..``, absolute, ``.git/``)."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\0" in path:
        raise ConfigError(f"Invalid path in repo: {path!r}. Use a relative POSIX path like 'dir/file.txt'.")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == ".git":
        raise ConfigError(f"Invalid path in repo: {path!r}. Empty, '.', '..' and '.git' segments are not allowed.")
    return path


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _tree_to_json(tree: dict[str, TreeEntry]) -> str:
    return json.dumps({path: entry.to_json() for path, entry in sorted(tree.items())}, separators=(",", ":"))


def _tree_from_json(text: str) -> dict[str, TreeEntry]:
    return {path: TreeEntry.from_json(value) for path, value in json.loads(text).items()}


def _new_commit_sha(parent: str | None, tree_json: str, message: str, date: str) -> str:
    # A random salt keeps shas unique even after a registry is wiped and rebuilt: clients cache
    # snapshots by sha forever, so a reused sha with other content would be served stale.
    payload = f"{parent}\n{date}\n{message}\n{uuid.uuid4().hex}\n{tree_json}"
    return hashlib.sha1(payload.encode()).hexdigest()


# ----------------------------------------------------------------------------- blob writer
class BlobWriter:
    """Streams bytes into ``tmp/`` while hashing; ``finish`` moves them under their sha256.

    Used for LFS uploads that arrive in chunks. ``abort`` (or a failed ``finish``) removes the
    temporary file so a broken upload leaves nothing behind.
    """

    def __init__(self, store: RegistryStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._tmp_path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        """Check the content against what the client announced, then publish it; returns sha256."""
        self._file.close()
        digest = self._hash.hexdigest()
        try:
            if expected_size is not None and self.size != expected_size:
                raise IntegrityError(f"Upload has {self.size} bytes but {expected_size} were announced; retry it.")
            if expected_sha256 is not None and digest != expected_sha256:
                raise IntegrityError(
                    f"Upload hashes to sha256 {digest} but {expected_sha256} was announced; the file changed "
                    "while uploading or was corrupted in transit. Retry the upload."
                )
            target = self._store.blob_path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp_path, target)
        finally:
            self._tmp_path.unlink(missing_ok=True)
        return digest

    def abort(self) -> None:
        self._file.close()
        self._tmp_path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- store
class RegistryStore:
    """All reads and writes of registry state. Thread-safe: every call opens its own connection."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.db_path = self.root / DB_FILENAME
        for folder in (self.root, self.blobs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            conn.executescript(_SCHEMA)

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front, so two commits
        to the same branch are serialised instead of both reading the same head."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- blobs -------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not _SHA256_RE.match(sha256):
            raise ConfigError(f"Invalid sha256 {sha256!r}: expected 64 lowercase hex digits.")
        return self.blobs_dir / sha256[:2] / sha256[2:]

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        try:
            stat = self.blob_path(sha256).stat()
        except (FileNotFoundError, ConfigError):
            return False
        return size is None or stat.st_size == size

    def blob_size(self, sha256: str) -> int | None:
        try:
            return self.blob_path(sha256).stat().st_size
        except (FileNotFoundError, ConfigError):
            return None

    def put_bytes(self, data: bytes) -> TreeEntry:
        """Store a regular file's content; returns its tree entry. Idempotent."""
        entry = TreeEntry.for_content(data)
        if not self.has_blob(entry.sha256, entry.size):
            writer = BlobWriter(self)
            writer.write(data)
            writer.finish(entry.sha256, entry.size)
        return entry

    def open_writer(self) -> BlobWriter:
        return BlobWriter(self)

    def read_blob(self, sha256: str) -> bytes:
        return self.blob_path(sha256).read_bytes()

    # -- meta --------------------------------------------------------------------------------
    def signing_key(self) -> bytes:
        """Secret for signed LFS upload URLs; kept in the database so it survives restarts."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
            if row is not None:
                return bytes.fromhex(row["value"])
            key = secrets.token_bytes(32)
            conn.execute("INSERT INTO meta (key, value) VALUES ('signing_key', ?)", (key.hex(),))
            return key

    # -- tokens ------------------------------------------------------------------------------
    def create_token(self, user: str, write: bool = True) -> str:
        check_name(user, "user name")
        token = "hf_" + secrets.token_urlsafe(30)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO tokens (token_hash, user, write, created_at) VALUES (?, ?, ?, ?)",
                (_hash_token(token), user, int(write), utc_now()),
            )
        return token

    def lookup_token(self, token: str) -> TokenInfo | None:
        with self._connect() as conn:
            row = conn.execute("SELECT user, write FROM tokens WHERE token_hash = ?", (_hash_token(token),)).fetchone()
        return None if row is None else TokenInfo(user=row["user"], write=bool(row["write"]))

    def revoke_token(self, token: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM tokens WHERE token_hash = ?", (_hash_token(token),)).rowcount > 0

    # -- repos -------------------------------------------------------------------------------
    @staticmethod
    def _repo_from_row(row: sqlite3.Row) -> Repo:
        return Repo(
            id=row["id"],
            type=row["type"],
            namespace=row["namespace"],
            name=row["name"],
            private=bool(row["private"]),
            created_at=row["created_at"],
        )

    def create_repo(self, repo_type: str, namespace: str, name: str, *, private: bool, author: str) -> Repo:
        """Create a repo with its initial commit (``.gitattributes``) on ``main``, in one transaction."""
        if repo_type not in REPO_TYPES:
            raise ConfigError(f"Unsupported repo type {repo_type!r}; this registry hosts {', '.join(REPO_TYPES)}.")
        check_name(namespace, "namespace")
        check_name(name, "repo name")
        if namespace.lower() in RESERVED_NAMESPACES:
            raise ConfigError(f"Namespace {namespace!r} is reserved; pick another one.")
        entry = self.put_bytes(_INITIAL_GITATTRIBUTES)
        now = utc_now()
        with self._write() as conn:
            if conn.execute(
                "SELECT 1 FROM repos WHERE type = ? AND namespace = ? AND name = ?", (repo_type, namespace, name)
            ).fetchone():
                raise AlreadyExists(f"{repo_type} {namespace}/{name} already exists.")
            cursor = conn.execute(
                "INSERT INTO repos (type, namespace, name, private, created_at) VALUES (?, ?, ?, ?, ?)",
                (repo_type, namespace, name, int(private), now),
            )
            repo_pk = cursor.lastrowid
            tree_json = _tree_to_json({".gitattributes": entry})
            sha = _new_commit_sha(None, tree_json, "initial commit", now)
            conn.execute(
                "INSERT INTO commits (sha, repo_id, parent, title, message, author, date, tree) "
                "VALUES (?, ?, NULL, 'initial commit', '', ?, ?, ?)",
                (sha, repo_pk, author, now, tree_json),
            )
            conn.execute(
                "INSERT INTO refs (repo_id, kind, name, sha) VALUES (?, 'branch', ?, ?)", (repo_pk, DEFAULT_BRANCH, sha)
            )
        return Repo(id=repo_pk, type=repo_type, namespace=namespace, name=name, private=private, created_at=now)

    def get_repo(self, repo_type: str, namespace: str, name: str) -> Repo:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM repos WHERE type = ? AND namespace = ? AND name = ?", (repo_type, namespace, name)
            ).fetchone()
        if row is None:
            raise RepoNotFound(f"{repo_type} {namespace}/{name} does not exist.")
        return self._repo_from_row(row)

    def list_repos(self, repo_type: str) -> list[Repo]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM repos WHERE type = ? ORDER BY namespace, name", (repo_type,)).fetchall()
        return [self._repo_from_row(row) for row in rows]

    def delete_repo(self, repo: Repo) -> None:
        """Drop the repo's metadata. Blobs stay: they may be shared with other repos."""
        with self._write() as conn:
            conn.execute("DELETE FROM refs WHERE repo_id = ?", (repo.id,))
            conn.execute("DELETE FROM commits WHERE repo_id = ?", (repo.id,))
            conn.execute("DELETE FROM repos WHERE id = ?", (repo.id,))

    def set_private(self, repo: Repo, private: bool) -> None:
        with self._write() as conn:
            conn.execute("UPDATE repos SET private = ? WHERE id = ?", (int(private), repo.id))

    # -- refs --------------------------------------------------------------------------------
    def refs(self, repo: Repo, kind: str) -> dict[str, str]:
        """Branch or tag names mapped to commit shas, sorted by name."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT name, sha FROM refs WHERE repo_id = ? AND kind = ? ORDER BY name", (repo.id, kind)
            ).fetchall()
        return {row["name"]: row["sha"] for row in rows}

    def _ref(self, conn: sqlite3.Connection, repo: Repo, kind: str, name: str) -> str | None:
        row = conn.execute(
            "SELECT sha FROM refs WHERE repo_id = ? AND kind = ? AND name = ?", (repo.id, kind, name)
        ).fetchone()
        return None if row is None else row["sha"]

    def branch_head(self, repo: Repo, branch: str) -> str | None:
        with self._connect() as conn:
            return self._ref(conn, repo, "branch", branch)

    def resolve(self, repo: Repo, revision: str) -> str:
        """Branch, tag, ``refs/heads/x``, ``refs/tags/x`` or a full commit sha of this repo → sha."""
        with self._connect() as conn:
            sha = self._resolve(conn, repo, revision)
        if sha is None:
            raise RevisionNotFound(self._revision_hint(repo, revision))
        return sha

    def _resolve(self, conn: sqlite3.Connection, repo: Repo, revision: str) -> str | None:
        if revision.startswith("refs/heads/"):
            return self._ref(conn, repo, "branch", revision.removeprefix("refs/heads/"))
        if revision.startswith("refs/tags/"):
            return self._ref(conn, repo, "tag", revision.removeprefix("refs/tags/"))
        sha = self._ref(conn, repo, "branch", revision) or self._ref(conn, repo, "tag", revision)
        if sha is None and _SHA1_RE.match(revision):
            row = conn.execute("SELECT sha FROM commits WHERE sha = ? AND repo_id = ?", (revision, repo.id)).fetchone()
            sha = None if row is None else row["sha"]
        return sha

    def _revision_hint(self, repo: Repo, revision: str) -> str:
        branches = ", ".join(self.refs(repo, "branch")) or "none"
        tags = ", ".join(self.refs(repo, "tag")) or "none"
        return (
            f"Revision {revision!r} not found in {repo.type} {repo.repo_id}. "
            f"Branches: {branches}; tags: {tags}; or pass a full 40-character commit sha."
        )

    def create_ref(self, repo: Repo, kind: str, name: str, revision: str, message: str | None = None) -> str:
        """Point a new branch or tag at ``revision``; returns the sha. Existing names are refused."""
        if kind not in ("branch", "tag"):
            raise ConfigError(f"Unknown ref kind {kind!r}.")
        _check_ref_name(name, kind)
        with self._write() as conn:
            sha = self._resolve(conn, repo, revision)
            if sha is None:
                raise RevisionNotFound(self._revision_hint(repo, revision))
            if self._ref(conn, repo, kind, name) is not None:
                raise AlreadyExists(f"{kind.capitalize()} {name!r} already exists in {repo.repo_id}.")
            if kind == "branch" and self._ref(conn, repo, "tag", name) is not None:
                raise AlreadyExists(f"A tag named {name!r} exists in {repo.repo_id}; pick another branch name.")
            if kind == "tag" and self._ref(conn, repo, "branch", name) is not None:
                raise AlreadyExists(f"A branch named {name!r} exists in {repo.repo_id}; pick another tag name.")
            conn.execute(
                "INSERT INTO refs (repo_id, kind, name, sha, message) VALUES (?, ?, ?, ?, ?)",
                (repo.id, kind, name, sha, message),
            )
        return sha

    def delete_ref(self, repo: Repo, kind: str, name: str) -> None:
        if kind == "branch" and name == DEFAULT_BRANCH:
            raise ConfigError(f"The default branch {DEFAULT_BRANCH!r} cannot be deleted; delete the repo instead.")
        with self._write() as conn:
            deleted = conn.execute(
                "DELETE FROM refs WHERE repo_id = ? AND kind = ? AND name = ?", (repo.id, kind, name)
            ).rowcount
        if not deleted:
            raise RevisionNotFound(f"{kind.capitalize()} {name!r} not found in {repo.repo_id}.")

    # -- commits -----------------------------------------------------------------------------
    @staticmethod
    def _commit_from_row(row: sqlite3.Row) -> Commit:
        return Commit(
            sha=row["sha"],
            repo_id=row["repo_id"],
            parent=row["parent"],
            title=row["title"],
            message=row["message"],
            author=row["author"],
            date=row["date"],
            tree=_tree_from_json(row["tree"]),
        )

    def get_commit(self, sha: str) -> Commit:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM commits WHERE sha = ?", (sha,)).fetchone()
        if row is None:
            raise RevisionNotFound(f"Commit {sha} does not exist.")
        return self._commit_from_row(row)

    def history(self, sha: str, limit: int | None = None) -> list[Commit]:
        """Commits from ``sha`` back to the first one, newest first."""
        out: list[Commit] = []
        with self._connect() as conn:
            current: str | None = sha
            while current is not None and (limit is None or len(out) < limit):
                row = conn.execute("SELECT * FROM commits WHERE sha = ?", (current,)).fetchone()
                if row is None:
                    break
                commit = self._commit_from_row(row)
                out.append(commit)
                current = commit.parent
        return out

    def commit(
        self,
        repo: Repo,
        branch: str,
        operations: Sequence[CommitOperation],
        *,
        title: str,
        message: str = "",
        author: str,
        parent_commit: str | None = None,
    ) -> Commit:
        """Apply ``operations`` on top of ``branch`` and move the branch, atomically.

        Every added blob must already be in the blob store with the declared size; otherwise
        nothing is written and :class:`IntegrityError` says which file is missing.
        """
        if not title.strip():
            raise ConfigError("A commit needs a non-empty summary (commit_message).")
        for op in operations:
            check_path(op.path)
        with self._write() as conn:
            head = self._ref(conn, repo, "branch", branch)
            if head is None:
                raise RevisionNotFound(
                    f"Branch {branch!r} not found in {repo.repo_id}; commits go to an existing branch "
                    "(create it first with create_branch)."
                )
            if parent_commit is not None and parent_commit != head:
                raise ParentMismatch(
                    f"parentCommit {parent_commit} is not the head of {branch!r} ({head}): someone pushed in "
                    "between. Fetch the new head and retry."
                )
            row = conn.execute("SELECT tree FROM commits WHERE sha = ?", (head,)).fetchone()
            tree = _tree_from_json(row["tree"])
            for op in operations:
                _apply(tree, op, repo)
            for path, entry in tree.items():
                if not self.has_blob(entry.sha256, entry.size):
                    raise IntegrityError(
                        f"File {path!r} refers to content sha256={entry.sha256} ({entry.size} bytes) that was "
                        "never uploaded to this registry. Upload it first (LFS batch + PUT), then commit again."
                    )
            date = utc_now()
            tree_json = _tree_to_json(tree)
            full_message = f"{title}\n\n{message}" if message else title
            sha = _new_commit_sha(head, tree_json, full_message, date)
            conn.execute(
                "INSERT INTO commits (sha, repo_id, parent, title, message, author, date, tree) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sha, repo.id, head, title, message, author, date, tree_json),
            )
            conn.execute(
                "UPDATE refs SET sha = ? WHERE repo_id = ? AND kind = 'branch' AND name = ?", (sha, repo.id, branch)
            )
        return Commit(
            sha=sha, repo_id=repo.id, parent=head, title=title, message=message, author=author, date=date, tree=tree
        )


def _apply(tree: dict[str, TreeEntry], op: CommitOperation, repo: Repo) -> None:
    """Apply one operation to a tree in place, refusing paths that clash with folders."""
    if isinstance(op, AddFile):
        if any(existing.startswith(op.path + "/") for existing in tree):
            raise ConfigError(f"Cannot add file {op.path!r}: a folder with that name exists in {repo.repo_id}.")
        parts = op.path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in tree:
                raise ConfigError(f"Cannot add {op.path!r}: {'/'.join(parts[:depth])!r} is a file, not a folder.")
        tree[op.path] = op.entry
    elif isinstance(op, DeleteFile):
        if tree.pop(op.path, None) is None:
            raise EntryNotFound(f"Cannot delete {op.path!r}: A file with this name doesn't exist in {repo.repo_id}.")
    else:
        prefix = op.path.rstrip("/") + "/"
        doomed = [path for path in tree if path.startswith(prefix)]
        if not doomed:
            raise EntryNotFound(
                f"Cannot delete folder {op.path!r}: A file with this name doesn't exist in {repo.repo_id}."
            )
        for path in doomed:
            del tree[path]


def _check_ref_name(name: str, kind: str) -> None:
    """Refs follow git's rules loosely; a sha-shaped name would shadow commit lookups."""
    bad = (
        not name
        or name.startswith(("/", "-", "refs/"))
        or name.endswith(("/", ".lock", "."))
        or ".." in name
        or any(ch in name for ch in " ~^:?*[\\\0")
        or _SHA1_RE.match(name)
    )
    if bad:
        raise ConfigError(f"Invalid {kind} name {name!r}: use something like 'v1' or 'dev'.")


def create_token(root: Path | str, user: str, write: bool = True) -> str:
    """Create an access token for ``user`` in the registry at ``root`` and return it.

    Only a hash is stored, so the returned string is the one chance to record it. A write token may
    create repos, commit and tag in the namespace ``user``; any token may read that user's private
    repos. Raises :class:`ConfigError` for an invalid user name.
    """
    return RegistryStore(root).create_token(user, write=write)


def authenticate(store: RegistryStore, token: str | None) -> TokenInfo | None:
    """``None`` for anonymous callers; :class:`AuthError` for a token this registry never issued."""
    if token is None:
        return None
    info = store.lookup_token(token)
    if info is None:
        raise AuthError("Invalid credentials in Authorization header")
    return info
