"""Operator tasks on a registry folder: ``gc``, ``fsck``, ``backup`` and ``restore``.

All of them may run while ``atlas-align registry serve`` serves the same folder (restore writes a
new folder, which a server is then started on):

* :func:`collect_garbage` frees blobs that no retained commit needs. Retained: every commit
  reachable from a branch or tag (the whole history of each, since clients may download any past
  revision by sha), and anything younger than the grace period. Commits no ref reaches any more
  (their branch was deleted) are pruned once older than the grace period; deleted repos leave no
  commits behind, so their blobs go too. Uploads in flight are protected by the grace period on
  the *blob's age*: a blob is written (or, when it was stored already, touched) by every upload
  and by every "already have it" answer, and a commit names it only after that. The deletion
  itself runs inside the store's write transaction, so no commit can land between the decision
  and the unlink; a blob re-uploaded at that very moment is detected (fresh mtime) and put back.
* :func:`fsck` re-hashes every blob; corrupt ones are quarantined exactly as a read would
  (:meth:`RegistryStore.check_blob`), so the server answers an error for them, never wrong bytes.
  Blobs that commits name but that are not stored are reported as missing.
* :func:`backup` takes a consistent copy: SQLite's online backup API first (a snapshot, even with
  writers active), then the blobs that snapshot references — blobs are immutable and content
  addressed, so any copy made afterwards is right. Repeated backups into the same folder copy only
  new blobs. :func:`restore` checks a backup and copies it into a fresh registry folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from atlas_align.errors import ConfigError
from atlas_align.registry.server.store import DB_FILENAME, RegistryStore

__all__ = [
    "BACKUP_MANIFEST",
    "DEFAULT_GC_GRACE_S",
    "BackupReport",
    "FsckReport",
    "GcReport",
    "backup",
    "collect_garbage",
    "fsck",
    "restore",
]

# An upload older than this that no commit names yet is garbage. Long enough for the slowest
# multi-file upload to reach its commit (the client uploads every file first, then commits).
DEFAULT_GC_GRACE_S = 24 * 3600.0
BACKUP_MANIFEST = "BACKUP.json"
_COPY_BLOCK = 1 << 20


def _iso(ts: float) -> str:
    """The store's date format, so commit dates compare as strings."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tree_objects(tree_json: str) -> Iterable[tuple[str, int]]:
    for entry in json.loads(tree_json).values():
        yield entry["sha256"], int(entry["size"])


def _retained(conn: sqlite3.Connection, young_since: str) -> tuple[set[str], int]:
    """Commits to keep: those reachable from any branch or tag, those made since ``young_since``
    (an ISO date), and all their ancestors. Also returns how many commits there are. Reads no
    trees, so it is cheap enough to redo under the write lock."""
    commits = {row["sha"]: (row["parent"], row["date"]) for row in conn.execute("SELECT sha, parent, date FROM commits")}
    roots = [row["sha"] for row in conn.execute("SELECT sha FROM refs")]
    roots += [sha for sha, (_, date) in commits.items() if date >= young_since]
    retained: set[str] = set()
    for root in roots:
        current: str | None = root
        while current is not None and current not in retained and current in commits:
            retained.add(current)
            current = commits[current][0]
    return retained, len(commits)


def _needed(conn: sqlite3.Connection, shas: Iterable[str]) -> set[str]:
    needed: set[str] = set()
    for sha in shas:
        row = conn.execute("SELECT tree FROM commits WHERE sha = ?", (sha,)).fetchone()
        if row is not None:
            needed.update(oid for oid, _ in _tree_objects(row["tree"]))
    return needed


# ----------------------------------------------------------------------------- gc
@dataclass
class GcReport:
    dry_run: bool
    blobs_freed: int = 0
    bytes_freed: int = 0
    commits_pruned: int = 0
    tmp_files_removed: int = 0
    tmp_bytes_removed: int = 0
    blobs_kept: int = 0
    freed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (
            f"gc: {verb} {self.blobs_freed} blob(s), {_human(self.bytes_freed)}; "
            f"{'would prune' if self.dry_run else 'pruned'} {self.commits_pruned} unreachable commit(s); "
            f"{'would remove' if self.dry_run else 'removed'} {self.tmp_files_removed} stale temporary file(s) "
            f"({_human(self.tmp_bytes_removed)}); {self.blobs_kept} blob(s) kept"
        )


def collect_garbage(root: Path | str, *, grace_s: float = DEFAULT_GC_GRACE_S, dry_run: bool = False) -> GcReport:
    """Free what no branch, tag or retained commit needs (see the module docstring); safe while serving.

    ``grace_s``: blobs, temporary uploads and unreachable commits younger than this are kept (an
    upload in flight is younger). ``dry_run``: report, change nothing.
    """
    if grace_s < 0:
        raise ConfigError(f"--grace must be >= 0 seconds, not {grace_s}.")
    store = RegistryStore(root)
    report = GcReport(dry_run=dry_run)
    cutoff = time.time() - grace_s
    # Stale temporary files of dead uploads (a live upload writes to its file, so it stays fresh).
    for path in sorted(store.tmp_dir.iterdir()):
        try:
            stat = path.stat()
            if path.is_file() and stat.st_mtime < cutoff:
                if not dry_run:
                    path.unlink()
                report.tmp_files_removed += 1
                report.tmp_bytes_removed += stat.st_size
        except FileNotFoundError:
            continue

    # Phase 1, without the lock: what the current state retains, and which blobs are old enough.
    young_since = _iso(cutoff)
    with store.connect() as conn:
        retained_before, _ = _retained(conn, young_since)
        needed = _needed(conn, retained_before)
    candidates: list[tuple[str, Path]] = []
    for sha256, path in store.iter_blobs():
        try:
            if sha256 not in needed and path.stat().st_mtime < cutoff:
                candidates.append((sha256, path))
            else:
                report.blobs_kept += 1
        except FileNotFoundError:
            continue

    # Phase 2, under the write lock: no commit, ref change or upload record can interleave.
    transaction = store.connect() if dry_run else store.write_transaction()
    with transaction as conn:
        retained, _ = _retained(conn, young_since)
        needed |= _needed(conn, retained - retained_before)
        pruned = [row["sha"] for row in conn.execute("SELECT sha FROM commits") if row["sha"] not in retained]
        for sha256, path in candidates:
            if sha256 in needed:
                report.blobs_kept += 1
                continue
            size = _free_blob(store, sha256, path, cutoff, dry_run)
            if size is None:
                report.blobs_kept += 1
                continue
            report.blobs_freed += 1
            report.bytes_freed += size
            report.freed.append(sha256)
        report.commits_pruned = len(pruned)
        if not dry_run:
            for sha in pruned:
                conn.execute("DELETE FROM commits WHERE sha = ?", (sha,))
            # A repo may name an object only while it is stored: drop the records of freed ones.
            for sha256 in report.freed:
                conn.execute("DELETE FROM repo_objects WHERE sha256 = ?", (sha256,))
    return report


def _free_blob(store: RegistryStore, sha256: str, path: Path, cutoff: float, dry_run: bool) -> int | None:
    """Remove one unneeded blob; ``None`` if it turned out to be in use (touched by an upload)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    if stat.st_mtime >= cutoff:
        return None
    if dry_run:
        return stat.st_size
    # Moved aside first, then checked again: an upload that touched it between the stat and the
    # move left a fresh mtime, and gets its blob back.
    trash = store.tmp_dir / f"gc-{sha256}"
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return None
    moved = trash.stat()
    if moved.st_mtime >= cutoff:
        if not path.exists():
            os.replace(trash, path)
        else:
            trash.unlink()
        return None
    trash.unlink()
    return moved.st_size


# ----------------------------------------------------------------------------- fsck
@dataclass
class FsckReport:
    blobs_checked: int = 0
    bytes_checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (sha256, "ns/name@commit:path")
    stray: list[str] = field(default_factory=list)
    quarantined_before: int = 0
    database: str = "ok"

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing and self.database == "ok"

    def lines(self) -> list[str]:
        out = [f"corrupt {sha256} (quarantined)" for sha256 in self.corrupt]
        out += [f"missing {sha256} (needed by {where})" for sha256, where in self.missing]
        out += [f"stray   {path} (not a blob name; left alone)" for path in self.stray]
        if self.database != "ok":
            out.append(f"database: {self.database}")
        out.append(
            f"fsck: {self.blobs_checked} blob(s) re-hashed, {_human(self.bytes_checked)}: "
            f"{len(self.corrupt)} corrupt, {len(self.missing)} missing, database {'ok' if self.database == 'ok' else 'DAMAGED'}"
            + (f"; {self.quarantined_before} file(s) were already in quarantine/" if self.quarantined_before else "")
        )
        return out


def fsck(root: Path | str) -> FsckReport:
    """Re-hash every blob (quarantining corrupt ones), report blobs commits need but the store lacks,
    and run SQLite's integrity check. Safe while serving; ``report.ok`` says whether all is well."""
    store = RegistryStore(root)
    report = FsckReport()
    if store.quarantine_dir.exists():
        report.quarantined_before = sum(1 for _ in store.quarantine_dir.iterdir())
    with store.connect() as conn:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        report.database = "ok" if result == ["ok"] else "; ".join(result[:5])
    present: dict[str, int] = {}
    for sha256, path in store.iter_blobs():
        try:
            size = path.stat().st_size
            intact = store.check_blob(sha256)
        except FileNotFoundError:  # freed by a concurrent gc
            continue
        report.blobs_checked += 1
        report.bytes_checked += size
        if intact:
            present[sha256] = size
        else:
            report.corrupt.append(sha256)
    report.stray = [str(path.relative_to(store.root)) for path in store.stray_files()]
    # Every commit still in the database may be served, so each of its blobs must be there.
    seen: set[str] = set()
    corrupt = set(report.corrupt)  # reported once, as corrupt
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT c.sha, c.tree, r.namespace, r.name FROM commits c JOIN repos r ON r.id = c.repo_id"
        )
        for row in rows:
            for path, entry in json.loads(row["tree"]).items():
                sha256, size = entry["sha256"], int(entry["size"])
                if sha256 in seen or sha256 in corrupt or present.get(sha256) == size or store.has_blob(sha256, size):
                    continue
                seen.add(sha256)
                report.missing.append((sha256, f"{row['namespace']}/{row['name']}@{row['sha'][:12]}:{path}"))
    return report


# ----------------------------------------------------------------------------- backup / restore
@dataclass
class BackupReport:
    out: Path
    blobs_copied: int = 0
    bytes_copied: int = 0
    blobs_present: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    def lines(self) -> list[str]:
        out = [f"missing {sha256} (not in the source registry; run `atlas-align registry fsck`)" for sha256 in self.missing]
        out += [f"corrupt {sha256} in the source (not copied; run `atlas-align registry fsck`)" for sha256 in self.corrupt]
        out.append(
            f"backup: database + {self.blobs_copied} new blob(s) copied ({_human(self.bytes_copied)}), "
            f"{self.blobs_present} already in {self.out}; {len(self.missing)} missing, {len(self.corrupt)} corrupt"
        )
        return out


def _private_db_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 before SQLite opens it (it holds the signing key)."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))


def _copy_db(source: Path, target: Path) -> None:
    """SQLite online backup of ``source`` into ``target`` (created 0600, replaced atomically)."""
    partial = target.with_name(target.name + ".partial")
    _private_db_file(partial)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # one step: a consistent snapshot even while the server writes
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            dst.close()
    finally:
        src.close()
    os.chmod(partial, 0o600)
    os.replace(partial, target)


def _referenced(db: Path) -> dict[str, int]:
    """Every object the database knows: in some commit's tree, or recorded as uploaded to a repo."""
    objects: dict[str, int] = {}
    conn = sqlite3.connect(db)
    try:
        for (tree,) in conn.execute("SELECT tree FROM commits"):
            objects.update(_tree_objects(tree))
        for sha256, size in conn.execute("SELECT sha256, size FROM repo_objects"):
            objects.setdefault(sha256, int(size))
    finally:
        conn.close()
    return objects


def _in_trees(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {oid for (tree,) in conn.execute("SELECT tree FROM commits") for oid, _ in _tree_objects(tree)}
    finally:
        conn.close()


def _copy_verified(source: Path, target: Path, sha256: str) -> int | None:
    """Copy a blob while hashing it; publish under ``target`` only if the bytes match the name.
    Returns the size, or ``None`` for corrupt bytes (nothing is left behind then)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(partial, "wb") as dst:
            for block in iter(lambda: src.read(_COPY_BLOCK), b""):
                digest.update(block)
                dst.write(block)
                size += len(block)
        if digest.hexdigest() != sha256:
            return None
        os.replace(partial, target)
        return size
    finally:
        partial.unlink(missing_ok=True)


def backup(root: Path | str, out: Path | str) -> BackupReport:
    """Copy the registry at ``root`` into ``out``: the database (online backup API, mode 0600),
    then every blob that copy references (verified while copied). Safe while serving; a repeated
    backup into the same ``out`` copies only blobs it lacks."""
    store = RegistryStore(root)
    out = Path(out)
    if out.resolve() == store.root.resolve() or store.root.resolve() in out.resolve().parents:
        raise ConfigError(f"Back up to a folder outside the registry, not {out}.")
    if out.exists() and any(out.iterdir()) and not (out / BACKUP_MANIFEST).exists():
        raise ConfigError(f"{out} is not empty and holds no earlier backup ({BACKUP_MANIFEST}); pick a new folder.")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # private repos' files and the token hashes are in there
    started = time.time()
    db = out / DB_FILENAME
    _copy_db(store.db_path, db)
    report = BackupReport(out=out)
    in_trees = _in_trees(db)
    for sha256, size in sorted(_referenced(db).items()):
        target = out / "blobs" / sha256[:2] / sha256[2:]
        if target.exists() and target.stat().st_size == size:
            report.blobs_present += 1
            continue
        try:
            copied = _copy_verified(store.blob_path(sha256), target, sha256)
        except FileNotFoundError:
            if sha256 in in_trees:  # an upload no commit names may have been freed by gc: no loss
                report.missing.append(sha256)
            continue
        if copied is None:
            report.corrupt.append(sha256)
            continue
        report.blobs_copied += 1
        report.bytes_copied += copied
    manifest = {
        "format": 1,
        "source": str(store.root.resolve()),
        "started": _iso(started),
        "finished": _iso(time.time()),
        "blobs_copied": report.blobs_copied,
        "blobs_present": report.blobs_present,
        "missing": report.missing,
        "corrupt": report.corrupt,
        "restore": f"atlas-align registry restore --backup {out} --root NEW_ROOT",
    }
    (out / BACKUP_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return report


def restore(backup_dir: Path | str, root: Path | str) -> BackupReport:
    """Check the backup at ``backup_dir`` (database integrity, every referenced blob re-hashed)
    and copy it into ``root``, which must not hold a registry yet. Start the server on ``root``
    afterwards. Nothing is written when the backup is damaged."""
    backup_dir, root = Path(backup_dir), Path(root)
    db = backup_dir / DB_FILENAME
    if not db.is_file():
        raise ConfigError(f"{backup_dir} holds no {DB_FILENAME}; is it a folder written by `registry backup`?")
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty: restore into a new folder, then point the server at it.")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    if result != ["ok"]:
        raise ConfigError(f"The backup's database is damaged: {'; '.join(result[:3])}")
    report = BackupReport(out=root)
    in_trees = _in_trees(db)
    staging = root.with_name(root.name + ".restoring")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        os.chmod(staging, 0o700)
        for sha256, _size in sorted(_referenced(db).items()):
            source = backup_dir / "blobs" / sha256[:2] / sha256[2:]
            if not source.exists():
                if sha256 in in_trees:
                    report.missing.append(sha256)
                continue
            copied = _copy_verified(source, staging / "blobs" / sha256[:2] / sha256[2:], sha256)
            if copied is None:
                report.corrupt.append(sha256)
                continue
            report.blobs_copied += 1
            report.bytes_copied += copied
        if not report.ok:
            raise ConfigError(
                f"The backup is incomplete: {len(report.missing)} blob(s) missing, {len(report.corrupt)} corrupt "
                f"(first: {(report.missing + report.corrupt)[0]}); nothing was restored."
            )
        _copy_db(db, staging / DB_FILENAME)
        if root.exists():
            root.rmdir()
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    RegistryStore(root)  # creates tmp/, checks the schema, and keeps the database 0600
    return report


def _human(n: int) -> str:
    """``"11 bytes"``, or ``"3.4 MiB (3565158 bytes)"``."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit} = {n} bytes"
