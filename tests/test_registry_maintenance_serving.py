"""Issue 12, data lifecycle while the server serves (its own process, the real client):
`registry gc` with commits in flight that re-use old orphans, `fsck` quarantining a corrupt blob
the server then refuses, and `backup` under writes restored into a second server.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from huggingface_hub import hf_hub_download

from atlas_align.cli.main import main
from tests.registry_server_fixture import RegistryServer, start_registry_server, stop_registry_server

pytestmark = [pytest.mark.usefixtures("hub_online"), pytest.mark.integration]

OLD = 2 * 24 * 3600


@pytest.fixture
def server(tmp_path: Path):
    running = start_registry_server(tmp_path / "root")
    try:
        yield running
    finally:
        stop_registry_server(running)


def registry(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["registry", *args])
    return result.exit_code, result.output


def blob_path(server: RegistryServer, content: bytes) -> Path:
    digest = hashlib.sha256(content).hexdigest()
    return server.root / "blobs" / digest[:2] / digest[2:]


def age_blobs(server: RegistryServer) -> None:
    then = time.time() - OLD
    for path in (server.root / "blobs").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def lfs_upload_only(server: RegistryServer, repo_id: str, data: bytes) -> None:
    """Upload an object to ``repo_id`` through LFS batch + PUT, and never commit it."""
    oid = hashlib.sha256(data).hexdigest()
    response = httpx.post(
        f"{server.endpoint}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]},
        headers={"authorization": f"Bearer {server.token}"},
    )
    action = response.json()["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(action, content=data).status_code == 200


def in_background(work: Callable[[int], None], stop: threading.Event, errors: list) -> threading.Thread:
    def loop() -> None:
        i = 0
        while not stop.is_set():
            try:
                work(i)
            except Exception as exc:  # noqa: BLE001 - collected and asserted on
                errors.append(repr(exc))
                return
            i += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def assert_every_revision_downloads(server: RegistryServer, repo_id: str, cache: Path) -> int:
    api = server.api()
    files = 0
    for commit in api.list_repo_commits(repo_id):
        for path in api.list_repo_files(repo_id, revision=commit.commit_id):
            hf_hub_download(repo_id, path, revision=commit.commit_id, endpoint=server.endpoint, cache_dir=cache,
                            token=server.token)
            files += 1
    return files


def test_gc_while_commits_reuse_old_orphans(server: RegistryServer, tmp_path: Path) -> None:
    api = server.api()
    user = server.user
    keep, gone, busy = (f"{user}/{name}-{uuid.uuid4().hex[:6]}" for name in ("keep", "gone", "busy"))
    for repo_id in (keep, gone, busy):
        api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"v1 weights", path_in_repo="w.bin", repo_id=keep)
    api.upload_file(path_or_fileobj=b"v2 weights", path_in_repo="w.bin", repo_id=keep)  # v1 stays in history
    api.upload_file(path_or_fileobj=b"only in gone" * 100, path_in_repo="g.bin", repo_id=gone)
    lfs_upload_only(server, keep, b"never committed" * 100)
    wanted = [f"orphan {i} that a commit will want".encode() for i in range(12)]
    for data in wanted:
        lfs_upload_only(server, busy, data)
    api.delete_repo(gone)
    age_blobs(server)

    stop, errors = threading.Event(), []

    def commit_an_orphan(i: int) -> None:  # the same bytes again, inline: the upload touches the old blob
        if i < len(wanted):
            api.upload_file(path_or_fileobj=wanted[i], path_in_repo=f"o{i}.bin", repo_id=busy)
        else:
            time.sleep(0.05)

    def download(i: int) -> None:
        hf_hub_download(keep, "w.bin", endpoint=server.endpoint, cache_dir=tmp_path / f"c{i % 3}",
                        token=server.token, force_download=True)

    threads = [in_background(commit_an_orphan, stop, errors), in_background(download, stop, errors)]
    outputs = []
    deadline = time.monotonic() + 60
    while (len(outputs) < 3 or api.list_repo_files(busy) != sorted([".gitattributes", *[f"o{i}.bin" for i in range(len(wanted))]])) \
            and time.monotonic() < deadline and not errors:
        code, output = registry("gc", "--root", str(server.root))
        assert code == 0, output
        outputs.append(output)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert "freed" in outputs[0]
    assert not blob_path(server, b"never committed" * 100).exists()
    assert not blob_path(server, b"only in gone" * 100).exists()
    assert blob_path(server, b"v1 weights").exists()
    assert assert_every_revision_downloads(server, busy, tmp_path / "busy") >= len(wanted)
    assert assert_every_revision_downloads(server, keep, tmp_path / "keep") >= 3
    code, output = registry("fsck", "--root", str(server.root))
    assert code == 0 and "0 corrupt, 0 missing" in output, output
    assert "Traceback" not in server.log()


def test_fsck_quarantines_and_the_server_refuses_the_blob(server: RegistryServer, tmp_path: Path) -> None:
    api = server.api()
    repo_id = f"{server.user}/fsck-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    content = os.urandom(5000)
    api.upload_file(path_or_fileobj=content, path_in_repo="data.bin", repo_id=repo_id)
    sha = api.model_info(repo_id).sha
    url = f"{server.endpoint}/{repo_id}/resolve/{sha}/data.bin"
    assert httpx.get(url).content == content  # verified (and cached as good) by the server
    blob = blob_path(server, content)
    flipped = bytearray(content)
    flipped[100] ^= 1
    with open(blob, "r+b") as handle:  # in place, as bit rot would
        handle.write(flipped)

    code, output = registry("fsck", "--root", str(server.root))
    assert code == 1 and "1 corrupt" in output and "(quarantined)" in output, output
    response = httpx.get(url)
    assert response.status_code == 409 and response.headers["x-error-code"] == "CorruptObject"
    assert response.content != bytes(flipped)

    api.upload_file(path_or_fileobj=content, path_in_repo="data.bin", repo_id=repo_id)  # repair: re-upload
    assert httpx.get(url).content == content
    code, output = registry("fsck", "--root", str(server.root))
    assert code == 0 and "0 corrupt, 0 missing" in output, output


def test_backup_under_writes_restores_into_a_working_server(server: RegistryServer, tmp_path: Path) -> None:
    api = server.api()
    repo_id = f"{server.user}/backup-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"first", path_in_repo="a.txt", repo_id=repo_id)
    api.create_tag(repo_id, tag="v1")

    stop, errors = threading.Event(), []

    def commit(i: int) -> None:
        api.upload_file(path_or_fileobj=f"commit {i}".encode() * 50, path_in_repo=f"f{i % 4}.txt", repo_id=repo_id)

    writer = in_background(commit, stop, errors)
    time.sleep(0.5)
    code, output = registry("backup", "--root", str(server.root), "--out", str(tmp_path / "backup"))
    stop.set()
    writer.join(timeout=60)
    assert code == 0, output
    assert not errors, errors
    for name in ("registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm"):
        if (server.root / name).exists():
            assert stat.S_IMODE((server.root / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "backup" / "registry.sqlite3").stat().st_mode) == 0o600

    restored = tmp_path / "restored"
    code, output = registry("restore", "--backup", str(tmp_path / "backup"), "--root", str(restored))
    assert code == 0, output
    assert stat.S_IMODE((restored / "registry.sqlite3").stat().st_mode) == 0o600
    second = start_registry_server(restored)
    try:
        second.token = server.token  # the tokens came along
        files = assert_every_revision_downloads(second, repo_id, tmp_path / "cache")
        assert files >= 3
        assert second.api().list_repo_refs(repo_id).tags[0].name == "v1"
        assert all(m.id != repo_id for m in second.api(token=False).list_models(author=server.user))  # private
    finally:
        stop_registry_server(second)
    code, output = registry("fsck", "--root", str(restored))
    assert code == 0, output
