"""Issue 12, disk faults: on a full disk writes fail cleanly (507, no temp file left) while reads
keep working; temp files of a dead process are swept at start-up.

The full disk is simulated in process (``ENOSPC`` raised from the blob writer) through the real
ASGI app, since a real full filesystem needs root to mount.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from atlas_align.registry.server import create_app, create_token
from atlas_align.registry.server.store import BlobWriter


def _commit(client: TestClient, auth: dict, path: str, content: bytes) -> int:
    lines = [{"key": "header", "value": {"summary": f"add {path}"}},
             {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(),
                                       "encoding": "base64"}}]
    return client.post("/api/models/lab/m/commit/main", content="\n".join(map(json.dumps, lines)),
                       headers={**auth, "content-type": "application/x-ndjson"}).status_code


def test_disk_full_refuses_writes_keeps_reads_and_leaves_no_temp(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    auth = {"authorization": f"Bearer {create_token(tmp_path, 'lab')}"}
    with TestClient(create_app(tmp_path)) as client:
        assert client.post("/api/repos/create", json={"name": "m", "organization": "lab"}, headers=auth).is_success
        assert _commit(client, auth, "a.txt", b"before") == 200

        real_write = BlobWriter.write

        def full(self: BlobWriter, chunk: bytes) -> None:
            self._file.write = _raise_enospc  # the next write hits a full disk
            real_write(self, chunk)

        monkeypatch.setattr(BlobWriter, "write", full)
        response_code = _commit(client, auth, "b.txt", b"during")
        assert response_code == 507
        assert list((tmp_path / "tmp").iterdir()) == []
        sha = client.get("/api/models/lab/m").json()["sha"]
        assert client.get(f"/lab/m/resolve/{sha}/a.txt").content == b"before"
        monkeypatch.undo()
        assert _commit(client, auth, "b.txt", b"after") == 200


def _raise_enospc(*_: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_stale_temp_files_are_swept_at_start(tmp_path: Path) -> None:
    create_app(tmp_path)
    stale = tmp_path / "tmp" / "upload-dead"
    stale.write_bytes(b"x" * 100)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / "tmp" / "upload-live"
    fresh.write_bytes(b"y")
    create_app(tmp_path)
    assert not stale.exists() and fresh.exists()  # a live upload of a running server is kept
