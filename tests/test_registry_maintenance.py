"""Issue 12, data lifecycle: `registry gc`, `fsck`, `backup` / `restore` through the CLI (CliRunner)
on registries built with the store API. Serving while these run is in
tests/test_registry_maintenance_serving.py.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import time
from pathlib import Path

from click.testing import CliRunner

from atlas_align.cli.main import main
from atlas_align.registry.server.store import AddFile, DeleteFile, RegistryStore, Repo

OLD = 2 * 24 * 3600  # older than gc's default grace period (1 day)


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["registry", *args])
    assert result.exit_code == code, result.output
    return result.output


def add(store: RegistryStore, repo: Repo, path: str, content: bytes, branch: str = "main") -> str:
    entry = store.put_bytes(content, repo)
    return store.commit(repo, branch, [AddFile(path, entry)], title=f"add {path}", author="lab").sha


def blob(store: RegistryStore, content: bytes) -> Path:
    return store.blob_path(hashlib.sha256(content).hexdigest())


def age_everything(store: RegistryStore, seconds: float = OLD) -> None:
    """Pretend every blob was uploaded and every commit made ``seconds`` ago."""
    then = time.time() - seconds
    for _, path in store.iter_blobs():
        os.utime(path, (then, then))
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE commits SET date = '2000-01-01T00:00:00.000Z'")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- gc
def test_gc_frees_orphans_and_deleted_repos_but_nothing_any_ref_needs(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path)
    keep, gone = (store.create_repo("model", "lab", name, private=False, author="lab") for name in ("keep", "gone"))
    add(store, keep, "a.txt", b"kept in history")
    store.commit(keep, "main", [DeleteFile("a.txt")], title="rm", author="lab")  # still in history: kept
    add(store, keep, "shared.txt", b"shared")
    add(store, gone, "shared.txt", b"shared")
    add(store, gone, "only-gone.txt", b"only in the deleted repo" * 10)
    store.put_bytes(b"uploaded, never committed", keep)
    store.delete_repo(gone)
    age_everything(store)
    store.put_bytes(b"fresh upload, commit in flight", keep)

    before = {path for _, path in store.iter_blobs()}
    dry = run("gc", "--root", str(tmp_path), "--dry-run", "-v")
    assert "would free 2 blob(s), 265 bytes" in dry
    assert {path for _, path in store.iter_blobs()} == before  # dry run changes nothing

    out = run("gc", "--root", str(tmp_path))
    assert "freed 2 blob(s), 265 bytes" in out
    assert not blob(store, b"uploaded, never committed").exists()
    assert not blob(store, b"only in the deleted repo" * 10).exists()
    for content in (b"kept in history", b"shared", b"fresh upload, commit in flight"):
        assert blob(store, content).exists(), content
    # The freed upload is no longer the repo's: a commit naming it is refused until it is re-sent.
    assert store.repo_object_size(keep, hashlib.sha256(b"uploaded, never committed").hexdigest()) is None
    for commit in store.history(store.resolve(keep, "main")):
        for entry in commit.tree.values():
            assert store.read_blob(entry.sha256) is not None
    assert "freed 0 blob(s)" in run("gc", "--root", str(tmp_path))


def test_gc_prunes_commits_of_deleted_branches_keeps_tags(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path)
    repo = store.create_repo("model", "lab", "m", private=False, author="lab")
    store.create_ref(repo, "branch", "dev", "main")
    store.create_ref(repo, "branch", "exp", "main")
    dev_sha = add(store, repo, "dev.txt", b"on dev", branch="dev")
    add(store, repo, "exp.txt", b"on exp", branch="exp")
    store.create_ref(repo, "tag", "v1", dev_sha)
    store.delete_ref(repo, "branch", "dev")  # the tag still reaches it
    store.delete_ref(repo, "branch", "exp")  # nothing reaches it any more
    age_everything(store)
    out = run("gc", "--root", str(tmp_path))
    assert "freed 1 blob(s)" in out and "pruned 1 unreachable commit(s)" in out
    assert blob(store, b"on dev").exists() and not blob(store, b"on exp").exists()
    assert store.get_commit(store.resolve(repo, "v1")).tree["dev.txt"]


def test_gc_keeps_young_unreachable_commits_and_their_ancestors(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path)
    repo = store.create_repo("model", "lab", "m", private=False, author="lab")
    store.create_ref(repo, "branch", "dev", "main")
    add(store, repo, "dev.txt", b"dev, just deleted", branch="dev")
    store.delete_ref(repo, "branch", "dev")
    for _, path in store.iter_blobs():  # old blobs, but the commit is minutes old
        os.utime(path, (time.time() - OLD, time.time() - OLD))
    out = run("gc", "--root", str(tmp_path))
    assert "freed 0 blob(s)" in out and "pruned 0 unreachable" in out


def test_reuse_of_stored_content_refreshes_its_age(tmp_path: Path) -> None:
    """A commit in flight may name an old orphan: re-uploaded (same bytes) or answered "already
    have it" by LFS batch. Both touch the blob, so gc's grace period starts again and it stays."""
    store = RegistryStore(tmp_path)
    repo = store.create_repo("model", "lab", "m", private=False, author="lab")
    store.put_bytes(b"orphan, uploaded again", repo)
    sha = hashlib.sha256(b"weights").hexdigest()
    writer = store.open_writer()
    writer.write(b"weights")
    writer.finish(sha, 7)
    store.record_object(repo, sha, 7)
    store.put_bytes(b"orphan, nobody wants it", repo)
    age_everything(store)
    again = store.put_bytes(b"orphan, uploaded again", repo)  # an inline upload of the same content
    assert store.repo_object_size(repo, sha) == 7  # what LFS batch asks before "already have it"
    assert "freed 1 blob(s)" in run("gc", "--root", str(tmp_path))
    assert blob(store, b"orphan, uploaded again").exists() and blob(store, b"weights").exists()
    store.commit(repo, "main", [AddFile("a.txt", again), AddFile("w.bin", store.put_bytes(b"weights", repo))],
                 title="both", author="lab")


def test_gc_removes_stale_temporary_files(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path)
    stale = store.tmp_dir / "upload-dead"
    stale.write_bytes(b"x" * 50)
    os.utime(stale, (time.time() - OLD, time.time() - OLD))
    live = store.tmp_dir / "upload-live"
    live.write_bytes(b"y")
    assert "removed 1 stale temporary file(s) (50 bytes)" in run("gc", "--root", str(tmp_path))
    assert not stale.exists() and live.exists()


def test_gc_and_fsck_refuse_a_folder_without_registry(tmp_path: Path) -> None:
    for command in ("gc", "fsck"):
        out = run(command, "--root", str(tmp_path), code=2)
        assert "holds no registry" in out


# ----------------------------------------------------------------------------- fsck
def test_fsck_reports_and_quarantines_corrupt_and_missing_blobs(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path)
    repo = store.create_repo("model", "lab", "m", private=False, author="lab")
    add(store, repo, "good.txt", b"good")
    add(store, repo, "flipped.bin", b"will be flipped")
    add(store, repo, "lost.bin", b"will be lost")
    assert "0 corrupt, 0 missing, database ok" in run("fsck", "--root", str(tmp_path))

    flipped = blob(store, b"will be flipped")
    flipped.write_bytes(b"will be flippeD")
    blob(store, b"will be lost").unlink()
    (store.blobs_dir / "README").write_text("not a blob")
    out = run("fsck", "--root", str(tmp_path), code=1)
    assert f"corrupt {hashlib.sha256(b'will be flipped').hexdigest()} (quarantined)" in out
    assert f"missing {hashlib.sha256(b'will be lost').hexdigest()} (needed by lab/m@" in out and ":lost.bin)" in out
    assert "stray   blobs/README" in out
    assert "1 corrupt, 1 missing" in out
    assert not flipped.exists()
    assert [p.read_bytes() for p in store.quarantine_dir.iterdir()] == [b"will be flippeD"]
    # Reads of the quarantined blob answer an error, never the wrong bytes.
    try:
        store.read_blob(hashlib.sha256(b"will be flipped").hexdigest())
    except Exception as exc:  # noqa: BLE001 - the type is checked below
        assert type(exc).__name__ == "CorruptBlob"
    else:
        raise AssertionError("a quarantined blob was read")
    # Re-uploading the content repairs it.
    store.put_bytes(b"will be flipped", repo)
    store.put_bytes(b"will be lost", repo)
    out = run("fsck", "--root", str(tmp_path))
    assert "0 corrupt, 0 missing" in out and "1 file(s) were already in quarantine/" in out


# ----------------------------------------------------------------------------- backup / restore
def test_backup_and_restore_round_trip_with_private_files(tmp_path: Path) -> None:
    root, out, restored = tmp_path / "reg", tmp_path / "backup", tmp_path / "restored"
    store = RegistryStore(root)
    token = store.create_token("lab")
    repo = store.create_repo("model", "lab", "m", private=True, author="lab")
    shas = [add(store, repo, f"f{i}.bin", os.urandom(1000 + i)) for i in range(3)]
    store.create_ref(repo, "tag", "v1", shas[0])
    key = store.signing_key()
    assert mode(store.db_path) == 0o600

    assert "4 new blob(s)" in run("backup", "--root", str(root), "--out", str(out))
    assert mode(out / "registry.sqlite3") == 0o600 and mode(out) == 0o700
    assert not (out / "registry.sqlite3-wal").exists()
    add(store, repo, "later.bin", b"after the first backup")
    assert "1 new blob(s)" in run("backup", "--root", str(root), "--out", str(out))  # incremental

    output = run("restore", "--backup", str(out), "--root", str(restored))
    assert "registry serve --root" in output
    assert mode(restored / "registry.sqlite3") == 0o600
    back = RegistryStore(restored)
    assert back.lookup_token(token) is not None and back.signing_key() == key
    repo_back = back.get_repo("model", "lab", "m")
    assert repo_back.private and back.resolve(repo_back, "v1") == shas[0]
    for commit in back.history(back.resolve(repo_back, "main")):
        for entry in commit.tree.values():
            assert back.read_blob(entry.sha256) == store.read_blob(entry.sha256)
    assert "0 corrupt, 0 missing" in run("fsck", "--root", str(restored))
    # A restore never overwrites a registry.
    assert "not empty" in run("restore", "--backup", str(out), "--root", str(restored), code=2)


def test_restore_refuses_a_damaged_backup_and_writes_nothing(tmp_path: Path) -> None:
    root, out, restored = tmp_path / "reg", tmp_path / "backup", tmp_path / "restored"
    store = RegistryStore(root)
    repo = store.create_repo("model", "lab", "m", private=False, author="lab")
    add(store, repo, "f.bin", b"precious")
    run("backup", "--root", str(root), "--out", str(out))
    copy = out / "blobs" / hashlib.sha256(b"precious").hexdigest()[:2] / hashlib.sha256(b"precious").hexdigest()[2:]
    copy.write_bytes(b"Precious")
    assert "nothing was restored" in run("restore", "--backup", str(out), "--root", str(restored), code=2)
    assert not restored.exists() and not (tmp_path / "restored.restoring").exists()


def test_backup_reports_corrupt_source_blobs_and_refuses_odd_targets(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    store = RegistryStore(root)
    repo = store.create_repo("model", "lab", "m", private=False, author="lab")
    add(store, repo, "f.bin", b"flip me")
    blob(store, b"flip me").write_bytes(b"flip mE")
    out = run("backup", "--root", str(root), "--out", str(tmp_path / "b"), code=1)
    assert "corrupt" in out and not blob(store, b"flip me").with_name("x").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "data").write_text("mine")
    assert "not empty" in run("backup", "--root", str(root), "--out", str(tmp_path / "busy"), code=2)
    assert "outside the registry" in run("backup", "--root", str(root), "--out", str(root / "b"), code=2)
