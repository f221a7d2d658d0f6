"""Storage behind the registry server: SQLite for metadata, a content-addressed blob folder for bytes.

Why this split: file contents are immutable and large, so they live on disk named by their
sha256 (``root/blobs/ab/cdef...``) and are written through a temporary file and ``os.replace``;
a crash never leaves a half-written blob under a real name. Everything that changes (repos,
commits, branches, tags, tokens) lives in one SQLite file, so a commit becomes visible in a single
transaction, and only after every blob it references exists. A failed upload therefore leaves the
previous revision exactly as it was.

Layout under ``root``::

    registry.sqlite3    repos / commits / refs / repo_objects / tokens / meta (mode 0600: it holds
                        the URL-signing key and token hashes)
    blobs/ab/cdef...    file contents by sha256 (regular and LFS alike)
    tmp/                blobs being written (same filesystem, so os.replace is atomic); swept at start
    quarantine/         blobs whose bytes no longer match their name (found on read or by `registry fsck`)

Objects are stored once on disk but *belong* to repos: ``repo_objects`` records which repo proved
it holds which content (by uploading the bytes, or by having it in its history). A commit may only
name objects of its own repo, so knowing a sha256 never grants access to another repo's file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atlas_align.errors import (
    ArtifactNotFound,
    AtlasAlignError,
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
    "check_path",
    "create_token",
    "CorruptBlob",
    "HeadRow",
    "ObjectNotInRepo",
    "StorageFull",
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
# Paths the client can download again: git and most filesystems refuse longer segments, and
# snapshot_download recreates the folders locally.
MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255
MAX_PATH_DEPTH = 64
# SQLite integers are 64-bit; sizes beyond this are nonsense anyway.
MAX_OBJECT_SIZE = 2**50
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
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
CREATE INDEX IF NOT EXISTS repos_nocase ON repos (type, namespace COLLATE NOCASE, name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS refs (
    repo_id  INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('branch', 'tag')),
    name     TEXT NOT NULL,
    sha      TEXT NOT NULL,
    message  TEXT,
    PRIMARY KEY (repo_id, kind, name)
);
CREATE TABLE IF NOT EXISTS repo_objects (
    repo_id  INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    sha256   TEXT NOT NULL,
    size     INTEGER NOT NULL,
    PRIMARY KEY (repo_id, sha256)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash  TEXT PRIMARY KEY,
    user        TEXT NOT NULL,
    write       INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  REAL
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


class ObjectNotInRepo(IntegrityError):
    """A commit names content this repo never received (knowing a hash is not owning the file)."""


class CorruptBlob(IntegrityError):
    """A stored blob no longer hashes to its name; it was quarantined and is never served."""


class StorageFull(AtlasAlignError, OSError):
    """The disk is full: writes are refused until space is freed, reads keep working."""


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
    expires_at: float | None = None


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
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value or "--" in value:
        raise ConfigError(
            f"Invalid {what} {str(value)[:120]!r}: use letters, digits, '-', '_' or '.', at most 96 characters, "
            "not starting or ending with '-' or '.'."
        )
    if value.endswith(".git"):
        raise ConfigError(f"Invalid {what} {value!r}: it may not end with '.git'.")
    return value


def check_path(path: str) -> str:
    """Reject paths that could escape the repo, confuse git, or never download again
    (``..``, absolute, ``.git/``, control characters, over-long segments, absurd depth)."""
    if not isinstance(path, str):
        raise ConfigError(f"Invalid path in repo: expected a string, got {type(path).__name__}.")
    if not path or path.startswith("/") or "\\" in path or _CONTROL_RE.search(path):
        raise ConfigError(
            f"Invalid path in repo: {path[:200]!r}. Use a relative POSIX path like 'dir/file.txt' "
            "without control characters."
        )
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"Invalid path in repo: {path[:200]!r} is not valid Unicode text.") from exc
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == ".git":
        raise ConfigError(
            f"Invalid path in repo: {path[:200]!r}. Empty, '.', '..' and '.git' segments are not allowed."
        )
    if len(encoded) > MAX_PATH_BYTES or len(parts) > MAX_PATH_DEPTH:
        raise ConfigError(
            f"Path too long: at most {MAX_PATH_BYTES} bytes and {MAX_PATH_DEPTH} folders deep "
            "(clients could not download it again)."
        )
    if any(len(part.encode("utf-8")) > MAX_SEGMENT_BYTES for part in parts):
        raise ConfigError(f"Path {path[:200]!r} has a name longer than {MAX_SEGMENT_BYTES} bytes.")
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
def _storage_error(exc: OSError) -> Exception:
    """ENOSPC/EDQUOT become :class:`StorageFull` (a clean 507), other OS errors pass through."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull("The registry's disk is full: free space (e.g. `atlas-align registry gc`) and retry.")
    return exc


class BlobWriter:
    """Streams bytes into ``tmp/`` while hashing; ``finish`` moves them under their sha256.

    ``abort`` (or any failed ``write``/``finish``) closes and removes the temporary file, so a
    broken upload — client gone, digest wrong, disk full — leaves nothing behind.
    """

    def __init__(self, store: RegistryStore, max_size: int | None = None) -> None:
        self._store = store
        self.max_size = max_size
        try:
            fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        except OSError as exc:
            raise _storage_error(exc) from exc
        self._file = os.fdopen(fd, "wb")
        self._tmp_path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            self.abort()
            raise IntegrityError(f"Upload is larger than the {self.max_size} bytes announced; refused.")
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.abort()
            raise _storage_error(exc) from exc
        self._hash.update(chunk)

    def finish(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        """Check the content against what the client announced, then publish it; returns sha256."""
        digest = self._hash.hexdigest()
        try:
            self._file.close()
            if expected_size is not None and self.size != expected_size:
                raise IntegrityError(f"Upload has {self.size} bytes but {expected_size} were announced; retry it.")
            if expected_sha256 is not None and digest != expected_sha256:
                raise IntegrityError(
                    f"Upload hashes to sha256 {digest} but {expected_sha256} was announced; the file changed "
                    "while uploading or was corrupted in transit. Retry the upload."
                )
            # Content already stored: refresh its age instead (gc's grace period counts from the
            # last upload). If gc removed it meanwhile, the touch fails and the new bytes go in.
            if not self._store.touch_blob(digest, self.size):
                target = self._store.blob_path(digest)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._tmp_path, target)
        except OSError as exc:
            raise _storage_error(exc) from exc
        finally:
            self._tmp_path.unlink(missing_ok=True)
        return digest

    def abort(self) -> None:
        self._file.close()
        self._tmp_path.unlink(missing_ok=True)


class LRUCache:
    """A small thread-safe LRU for immutable values (commits by sha, verified blobs)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):  # noqa: ANN001, ANN201 - generic helper
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:  # noqa: ANN001
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class HeadRow:
    """A repo with its default-branch head, as listings need it (no tree loaded)."""

    repo: Repo
    sha: str
    date: str


# ----------------------------------------------------------------------------- store
class RegistryStore:
    """All reads and writes of registry state. Thread-safe: every call opens its own connection."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.db_path = self.root / DB_FILENAME
        for folder in (self.root, self.blobs_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():  # created private: it holds the URL-signing key
            os.close(os.open(self.db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(self.db_path, 0o600)
        self._commits = LRUCache(256)
        self._verified = LRUCache(65536)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            conn.executescript(_SCHEMA)
            self._migrate(conn)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring registries written by older versions up to the current schema."""
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(tokens)")}
        if "expires_at" not in columns:
            conn.execute("ALTER TABLE tokens ADD COLUMN expires_at REAL")
        if conn.execute("SELECT 1 FROM meta WHERE key = 'repo_objects'").fetchone() is None:
            # Objects a repo already has in its history stay usable by that repo (and only by it).
            conn.execute("BEGIN IMMEDIATE")
            for row in conn.execute("SELECT repo_id, tree FROM commits").fetchall():
                for entry in json.loads(row["tree"]).values():
                    conn.execute(
                        "INSERT OR IGNORE INTO repo_objects (repo_id, sha256, size) VALUES (?, ?, ?)",
                        (row["repo_id"], entry["sha256"], int(entry["size"])),
                    )
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('repo_objects', '1')")
            conn.execute("COMMIT")

    def sweep_tmp(self, older_than_s: float = 60.0) -> int:
        """Remove temporary files left by uploads that died with an earlier process; returns how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        for path in self.tmp_dir.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    # -- connections -------------------------------------------------------------------------
    def connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A connection for reads (autocommit; rows as ``sqlite3.Row``), closed on exit."""
        return self._connect()

    def write_transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The store's write lock: one ``BEGIN IMMEDIATE`` transaction, committed on exit. Commits,
        ref changes and uploads' records wait while it is held (readers do not)."""
        return self._write()

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
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "disk" in str(exc) or "full" in str(exc):
                    raise StorageFull("The registry's disk is full: writes are refused until space is freed.") from exc
                raise
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                conn.execute("ROLLBACK")
                if "full" in str(exc):
                    raise StorageFull("The registry's disk is full: writes are refused until space is freed.") from exc
                raise

    # -- blobs -------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
            raise ConfigError(f"Invalid sha256 {str(sha256)[:80]!r}: expected 64 lowercase hex digits.")
        return self.blobs_dir / sha256[:2] / sha256[2:]

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        try:
            stat = self.blob_path(sha256).stat()
        except (FileNotFoundError, ConfigError):
            return False
        return size is None or stat.st_size == size

    def touch_blob(self, sha256: str, size: int | None = None) -> bool:
        """Mark a stored blob as just used (its mtime is what gc's grace period measures), so a
        commit about to name it is not raced by ``gc``; ``False`` if it is not stored (with that size)."""
        try:
            path = self.blob_path(sha256)
            if size is not None and path.stat().st_size != size:
                return False
            os.utime(path)
        except (FileNotFoundError, ConfigError):
            return False
        except OSError:  # read-only filesystem and the like: the blob is there, only not touched
            return self.has_blob(sha256, size)
        return True

    def put_bytes(self, data: bytes, repo: Repo | None = None) -> TreeEntry:
        """Store a regular file's content (and record it as ``repo``'s); returns its tree entry."""
        entry = TreeEntry.for_content(data)
        if not self.touch_blob(entry.sha256, entry.size):
            writer = BlobWriter(self)
            writer.write(data)
            writer.finish(entry.sha256, entry.size)
        if repo is not None:
            self.record_object(repo, entry.sha256, entry.size)
        return entry

    def put_chunks(self, chunks: Iterable[bytes], size: int, repo: Repo) -> TreeEntry:
        """Store a regular file that arrives in pieces of known total ``size`` (inline base64
        content decoded chunk by chunk), recording it as ``repo``'s; memory stays one chunk."""
        git_hash = hashlib.sha1(b"blob %d\0" % size)
        writer = BlobWriter(self, max_size=size)
        try:
            for chunk in chunks:
                writer.write(chunk)
                git_hash.update(chunk)
            sha256 = writer.finish(expected_size=size)
        except BaseException:
            writer.abort()
            raise
        self.record_object(repo, sha256, size)
        return TreeEntry(sha256=sha256, size=size, is_lfs=False, oid=git_hash.hexdigest())

    def open_writer(self, max_size: int | None = None) -> BlobWriter:
        return BlobWriter(self, max_size)

    def verified_blob_path(self, sha256: str) -> Path:
        """The blob's path after checking (once per process and file version) that its bytes still
        hash to its name; a corrupt blob is moved to ``quarantine/`` and :class:`CorruptBlob` raised."""
        path = self.blob_path(sha256)
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise CorruptBlob(f"Stored content {sha256} is missing from the blob store; re-upload the file.") from exc
        key = (sha256, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if self._verified.get(key) is None:
            try:
                intact = self.check_blob(sha256)
            except FileNotFoundError as exc:
                raise CorruptBlob(f"Stored content {sha256} is missing from the blob store; re-upload the file.") from exc
            if not intact:
                raise CorruptBlob(
                    f"Stored content {sha256} is corrupt (its bytes changed on disk) and was quarantined; "
                    "re-upload the file."
                )
            self._verified.put(key, True)
        return path

    def check_blob(self, sha256: str) -> bool:
        """Re-hash a stored blob; one whose bytes no longer match its name is moved to
        ``quarantine/`` (so it is never served again) and ``False`` returned. Raises
        ``FileNotFoundError`` when it is not stored at all."""
        path = self.blob_path(sha256)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() == sha256:
            return True
        self.quarantine_blob(sha256)
        return False

    def quarantine_blob(self, sha256: str) -> Path | None:
        """Move a blob out of ``blobs/`` into ``quarantine/<sha256>.<time>``; returns where it went."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / f"{sha256}.{time.time_ns()}"
        try:
            os.replace(self.blob_path(sha256), target)
        except FileNotFoundError:
            return None
        return target

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Every stored blob as ``(sha256, path)``; files with names that are no sha256 are skipped
        (see :meth:`stray_files`)."""
        for folder in sorted(self.blobs_dir.iterdir()) if self.blobs_dir.exists() else []:
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in sorted(folder.iterdir()):
                sha256 = folder.name + path.name
                if path.is_file() and _SHA256_RE.match(sha256):
                    yield sha256, path

    def stray_files(self) -> list[Path]:
        """Files under ``blobs/`` that are not named by a sha256 (nothing of the registry's)."""
        stray = []
        for path in sorted(self.blobs_dir.rglob("*")):
            rel = path.relative_to(self.blobs_dir).parts
            if path.is_file() and not (len(rel) == 2 and len(rel[0]) == 2 and _SHA256_RE.match(rel[0] + rel[1])):
                stray.append(path)
        return stray

    def read_blob(self, sha256: str, limit: int | None = None) -> bytes:
        """A blob's bytes (at most ``limit`` of them), verified against its name."""
        path = self.verified_blob_path(sha256)
        with open(path, "rb") as handle:
            return handle.read() if limit is None else handle.read(limit)

    # -- objects per repo --------------------------------------------------------------------
    def record_object(self, repo: Repo, sha256: str, size: int) -> None:
        """``repo`` proved it holds this content (it sent the bytes); its commits may now name it."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO repo_objects (repo_id, sha256, size) VALUES (?, ?, ?)",
                (repo.id, sha256, size),
            )

    def repo_object_size(self, repo: Repo, sha256: str) -> int | None:
        """Size of an object of ``repo`` (uploaded to it or in its history); ``None`` if it has none."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT size FROM repo_objects WHERE repo_id = ? AND sha256 = ?", (repo.id, sha256)
            ).fetchone()
        # Touched: a client told "already have it" commits next, within gc's grace period.
        if row is None or not self.touch_blob(sha256, row["size"]):
            return None
        return int(row["size"])

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
    def create_token(self, user: str, write: bool = True, expires_in_s: float | None = None) -> str:
        check_name(user, "user name")
        token = "hf_" + secrets.token_urlsafe(30)
        expires_at = None if expires_in_s is None else time.time() + expires_in_s
        with self._write() as conn:
            conn.execute(
                "INSERT INTO tokens (token_hash, user, write, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (_hash_token(token), user, int(write), utc_now(), expires_at),
            )
        return token

    def lookup_token(self, token: str) -> TokenInfo | None:
        """The token's owner and rights; ``None`` for unknown or expired tokens."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT user, write, expires_at FROM tokens WHERE token_hash = ?", (_hash_token(token),)
            ).fetchone()
        if row is None or (row["expires_at"] is not None and row["expires_at"] < time.time()):
            return None
        return TokenInfo(user=row["user"], write=bool(row["write"]), expires_at=row["expires_at"])

    def list_tokens(self) -> list[dict]:
        """Every token without its secret: ``id`` (first 12 hex of its hash), user, rights, dates."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM tokens ORDER BY created_at").fetchall()
        return [
            {"id": row["token_hash"][:12], "user": row["user"], "write": bool(row["write"]),
             "created_at": row["created_at"], "expires_at": row["expires_at"]}
            for row in rows
        ]

    def revoke_token(self, token_or_id: str) -> bool:
        """Revoke by the token itself or by the ``id`` that :meth:`list_tokens` shows."""
        with self._write() as conn:
            if conn.execute("DELETE FROM tokens WHERE token_hash = ?", (_hash_token(token_or_id),)).rowcount:
                return True
            if re.fullmatch(r"[0-9a-f]{12}", token_or_id):
                return conn.execute(
                    "DELETE FROM tokens WHERE substr(token_hash, 1, 12) = ?", (token_or_id,)
                ).rowcount > 0
        return False

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
            existing = conn.execute(
                "SELECT namespace, name FROM repos WHERE type = ? AND namespace = ? COLLATE NOCASE "
                "AND name = ? COLLATE NOCASE",
                (repo_type, namespace, name),
            ).fetchone()
            if existing:  # ids are case-insensitive, as on the Hub
                raise AlreadyExists(f"{repo_type} {existing['namespace']}/{existing['name']} already exists.")
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
            conn.execute(
                "INSERT INTO repo_objects (repo_id, sha256, size) VALUES (?, ?, ?)", (repo_pk, entry.sha256, entry.size)
            )
        return Repo(id=repo_pk, type=repo_type, namespace=namespace, name=name, private=private, created_at=now)

    def get_repo(self, repo_type: str, namespace: str, name: str) -> Repo:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM repos WHERE type = ? AND namespace = ? COLLATE NOCASE AND name = ? COLLATE NOCASE",
                (repo_type, namespace, name),
            ).fetchone()
        if row is None:
            raise RepoNotFound(f"{repo_type} {namespace[:100]}/{name[:100]} does not exist.")
        return self._repo_from_row(row)

    def list_repos(self, repo_type: str) -> list[Repo]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM repos WHERE type = ? ORDER BY namespace, name", (repo_type,)).fetchall()
        return [self._repo_from_row(row) for row in rows]

    _HEAD_ORDER = {
        "lastModified": "c.date DESC, r.namespace, r.name",
        "createdAt": "r.created_at DESC, r.namespace, r.name",
        "id": "r.namespace, r.name",
    }

    def list_heads(self, repo_type: str, sort: str = "lastModified", offset: int = 0,
                   limit: int = -1) -> list[HeadRow]:
        """Repos of a type with their ``main`` head sha and date, sorted in SQL (no trees loaded):
        ``limit`` of them (all when negative) from position ``offset``, so a listing page reads
        what it shows instead of every repo."""
        order = self._HEAD_ORDER[sort]
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT r.*, c.sha AS head_sha, c.date AS head_date FROM repos r "
                "JOIN refs f ON f.repo_id = r.id AND f.kind = 'branch' AND f.name = ? "
                "JOIN commits c ON c.sha = f.sha WHERE r.type = ? ORDER BY " + order + " LIMIT ? OFFSET ?",
                (DEFAULT_BRANCH, repo_type, limit, offset),
            ).fetchall()
        return [HeadRow(self._repo_from_row(row), row["head_sha"], row["head_date"]) for row in rows]

    def delete_repo(self, repo: Repo) -> None:
        """Drop the repo's metadata. Blobs stay: they may be shared with other repos."""
        with self._write() as conn:
            conn.execute("DELETE FROM repo_objects WHERE repo_id = ?", (repo.id,))
            conn.execute("DELETE FROM refs WHERE repo_id = ?", (repo.id,))
            conn.execute("DELETE FROM commits WHERE repo_id = ?", (repo.id,))
            conn.execute("DELETE FROM repos WHERE id = ?", (repo.id,))
        self._commits.clear()

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
        if not isinstance(revision, str) or not revision or len(revision) > 256:
            raise RevisionNotFound(f"Revision {str(revision)[:80]!r} not found in {repo.repo_id}.")
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
        branches = ", ".join(list(self.refs(repo, "branch"))[:20]) or "none"
        tags = ", ".join(list(self.refs(repo, "tag"))[:20]) or "none"
        return (
            f"Revision {revision[:200]!r} not found in {repo.type} {repo.repo_id}. "
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
            raise RevisionNotFound(f"{kind.capitalize()} {name[:200]!r} not found in {repo.repo_id}.")

    # -- commits -----------------------------------------------------------------------------
    @staticmethod
    def _commit_from_row(row: sqlite3.Row, tree: dict[str, TreeEntry] | None = None) -> Commit:
        return Commit(
            sha=row["sha"],
            repo_id=row["repo_id"],
            parent=row["parent"],
            title=row["title"],
            message=row["message"],
            author=row["author"],
            date=row["date"],
            tree=_tree_from_json(row["tree"]) if tree is None else tree,
        )

    def get_commit(self, sha: str) -> Commit:
        """A commit with its tree; cached, since a commit never changes."""
        cached = self._commits.get(sha)
        if cached is not None:
            return cached
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM commits WHERE sha = ?", (sha,)).fetchone()
        if row is None:
            raise RevisionNotFound(f"Commit {sha} does not exist.")
        commit = self._commit_from_row(row)
        self._commits.put(sha, commit)
        return commit

    def history(self, sha: str, limit: int | None = None) -> list[Commit]:
        """Commits (with trees) from ``sha`` back to the first one, newest first."""
        out: list[Commit] = []
        current: str | None = sha
        while current is not None and (limit is None or len(out) < limit):
            try:
                commit = self.get_commit(current)
            except RevisionNotFound:
                break
            out.append(commit)
            current = commit.parent
        return out

    def history_meta(self, sha: str, limit: int) -> list[Commit]:
        """Up to ``limit`` commits from ``sha`` back, newest first, *without* their trees (cheap)."""
        out: list[Commit] = []
        with self._connect() as conn:
            current: str | None = sha
            while current is not None and len(out) < limit:
                row = conn.execute(
                    "SELECT sha, repo_id, parent, title, message, author, date FROM commits WHERE sha = ?", (current,)
                ).fetchone()
                if row is None:
                    break
                out.append(self._commit_from_row(row, tree={}))
                current = row["parent"]
        return out

    def commit_in_repo(self, repo: Repo, sha: str) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM commits WHERE sha = ? AND repo_id = ?", (sha, repo.id)).fetchone() \
                is not None

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

        Every added object must belong to ``repo`` (uploaded to it, or in its history) with the
        declared size; otherwise nothing is written and :class:`ObjectNotInRepo` says which file.
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
                    f"parentCommit {str(parent_commit)[:64]} is not the head of {branch!r} ({head}): someone "
                    "pushed in between. Fetch the new head and retry."
                )
            for op in operations:
                if isinstance(op, AddFile):
                    row = conn.execute(
                        "SELECT size FROM repo_objects WHERE repo_id = ? AND sha256 = ?", (repo.id, op.entry.sha256)
                    ).fetchone()
                    if row is None or row["size"] != op.entry.size or not self.has_blob(op.entry.sha256, op.entry.size):
                        raise ObjectNotInRepo(
                            f"File {op.path!r} refers to content sha256={op.entry.sha256} ({op.entry.size} bytes) "
                            f"that was never uploaded to {repo.repo_id}. Upload it first (LFS batch + PUT), then "
                            "commit again."
                        )
            editor = _TreeEditor(dict(self.get_commit(head).tree), repo)
            for op in operations:
                editor.apply(op)
            tree = editor.tree
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


class _TreeEditor:
    """Applies commit operations to a tree, refusing paths that clash with folders.

    Folder membership is kept in a counter, so a commit of N files into a tree of M costs
    O((N + M) * depth), not O(N * M).
    """

    def __init__(self, tree: dict[str, TreeEntry], repo: Repo) -> None:
        self.tree = tree
        self.repo = repo
        self.folders: dict[str, int] = {}
        for path in tree:
            self._count(path, +1)

    def _count(self, path: str, delta: int) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            self.folders[folder] = self.folders.get(folder, 0) + delta
            if self.folders[folder] <= 0:
                del self.folders[folder]

    def apply(self, op: CommitOperation) -> None:
        tree, repo = self.tree, self.repo
        if isinstance(op, AddFile):
            if op.path in self.folders:
                raise ConfigError(f"Cannot add file {op.path!r}: a folder with that name exists in {repo.repo_id}.")
            parts = op.path.split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in tree:
                    raise ConfigError(f"Cannot add {op.path!r}: {'/'.join(parts[:depth])!r} is a file, not a folder.")
            if op.path not in tree:
                self._count(op.path, +1)
            tree[op.path] = op.entry
        elif isinstance(op, DeleteFile):
            if tree.pop(op.path, None) is None:
                raise EntryNotFound(
                    f"Cannot delete {op.path!r}: A file with this name doesn't exist in {repo.repo_id}."
                )
            self._count(op.path, -1)
        else:
            folder = op.path.rstrip("/")
            if folder not in self.folders:
                raise EntryNotFound(
                    f"Cannot delete folder {op.path!r}: A file with this name doesn't exist in {repo.repo_id}."
                )
            prefix = folder + "/"
            for path in [path for path in tree if path.startswith(prefix)]:
                del tree[path]
                self._count(path, -1)


def _check_ref_name(name: str, kind: str) -> None:
    """Refs follow git's rules loosely; a sha-shaped name would shadow commit lookups."""
    bad = (
        not isinstance(name, str)
        or not name
        or len(name) > 200
        or _CONTROL_RE.search(name) is not None
        or name.startswith(("/", "-", "refs/"))
        or name.endswith(("/", ".lock", "."))
        or ".." in name
        or any(ch in name for ch in " ~^:?*[\\\0")
        or _SHA1_RE.match(name)
    )
    if bad:
        raise ConfigError(f"Invalid {kind} name {str(name)[:80]!r}: use something like 'v1' or 'dev'.")


def create_token(root: Path | str, user: str, write: bool = True, expires_in_s: float | None = None) -> str:
    """Create an access token for ``user`` in the registry at ``root`` and return it.

    Only a hash is stored, so the returned string is the one chance to record it. A write token may
    create repos, commit and tag in the namespace ``user``; any token may read that user's private
    repos. ``expires_in_s``: the token stops working after that many seconds. Raises
    :class:`ConfigError` for an invalid user name.
    """
    return RegistryStore(root).create_token(user, write=write, expires_in_s=expires_in_s)
