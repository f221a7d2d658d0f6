"""Issue 12, bounded listings at scale: `list_models` reads heads from SQL in batches from the
cursor on (a page costs what it shows, not the number of repos), and paging through the ``Link``
headers still returns every matching repo exactly once, in order. Server in its own process."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from atlas_align.registry.server.store import AddFile, RegistryStore
from tests.registry_server_fixture import SERVER_USER, start_registry_server, stop_registry_server

pytestmark = [pytest.mark.usefixtures("hub_online"), pytest.mark.integration]

TAGGED = b"---\ntags:\n- atlas-alignment\n---\n# tagged\n"
PLAIN = b"---\ntags:\n- other\n---\n# plain\n"


def populate(root: Path, count: int) -> list[str]:
    """``count`` repos through the store API (in RAM, then copied: fsync per transaction is slow
    here); every third one is tagged atlas-alignment. Returns the tagged ids in id order."""
    stage = Path(tempfile.mkdtemp(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    try:
        store = RegistryStore(stage / "root")
        tagged = []
        for i in range(count):
            repo = store.create_repo("model", SERVER_USER, f"r{i:03d}", private=False, author=SERVER_USER)
            card = TAGGED if i % 3 == 0 else PLAIN
            store.commit(repo, "main", [AddFile("README.md", store.put_bytes(card, repo))], title="card",
                         author=SERVER_USER)
            if i % 3 == 0:
                tagged.append(repo.repo_id)
        shutil.copytree(stage / "root", root)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return sorted(tagged)


def test_filtered_pages_cross_sql_batches_and_return_every_repo_once(tmp_path: Path) -> None:
    tagged = populate(tmp_path / "root", 200)
    server = start_registry_server(tmp_path / "root")
    try:
        # A page of 30 tagged repos scans ~90 heads: more than one SQL batch (64 + 1).
        url = f"{server.endpoint}/api/models?filter=atlas-alignment&limit=30&sort=id"
        seen, pages = [], 0
        while url:
            response = httpx.get(url)
            assert response.status_code == 200, response.text
            seen += [model["id"] for model in response.json()]
            pages += 1
            url = response.links.get("next", {}).get("url")
        assert seen == tagged and pages >= 3
        first = [m.id for m in server.api().list_models(filter="atlas-alignment", limit=30, sort="id")]
        assert first == tagged[:30]
        everything = [m.id for m in server.api().list_models(sort="id")]
        assert everything == sorted(everything) and len(everything) == 200
        assert httpx.get(f"{server.endpoint}/api/models?cursor=999999").json() == []
    finally:
        stop_registry_server(server)
