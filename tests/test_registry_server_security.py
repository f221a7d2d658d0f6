"""Issue 12 regressions, against the real server in its own process: objects are scoped per repo,
work per request is bounded, and hostile input gets a 4xx with ``X-Error-Code`` — never a 500.

Each test names the defect it pins. Raw HTTP (httpx) plays the attacker; the unmodified
``huggingface_hub`` client checks that honest use still works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationCopy, hf_hub_download

from tests.registry_server_fixture import RegistryServer

pytestmark = [pytest.mark.usefixtures("hub_online"), pytest.mark.integration]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def lfs_batch(server: RegistryServer, repo_id: str, token: str, oid: str, size: int) -> dict:
    response = httpx.post(
        f"{server.endpoint}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    return response.json()["objects"][0]


def lfs_upload(server: RegistryServer, repo_id: str, token: str, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    obj = lfs_batch(server, repo_id, token, oid, len(data))
    if "actions" in obj:
        assert httpx.put(obj["actions"]["upload"]["href"], content=data).status_code == 200
    return oid


def commit_raw(server: RegistryServer, repo_id: str, token: str, *ops: dict) -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": "raw commit"}}, *ops]
    return httpx.post(
        f"{server.endpoint}/api/models/{repo_id}/commit/main",
        content="\n".join(json.dumps(line) for line in lines),
        headers={**bearer(token), "content-type": "application/x-ndjson"},
    )


@pytest.fixture
def victim(registry_server: RegistryServer) -> tuple[str, str, bytes]:
    """A private repo of another user holding an LFS file: (repo_id, token, secret bytes)."""
    user = unique("victim")
    token = registry_server.make_token(user)
    repo_id = f"{user}/{unique('private')}"
    registry_server.api(token=token).create_repo(repo_id, private=True)
    secret = os.urandom(4096)
    oid = lfs_upload(registry_server, repo_id, token, secret)
    response = commit_raw(registry_server, repo_id, token, {
        "key": "lfsFile", "value": {"path": "weights.bin", "algo": "sha256", "oid": oid, "size": len(secret)}})
    assert response.status_code == 200, response.text
    return repo_id, token, secret


# ----------------------------------------------------------------------------- 1. per-repo objects
def test_commit_cannot_reference_another_repos_object_by_hash(
    registry_server: RegistryServer, victim: tuple[str, str, bytes], tmp_path: Path
) -> None:
    _, _, secret = victim
    oid = hashlib.sha256(secret).hexdigest()
    api, token = registry_server.api(), registry_server.token
    mine = f"{registry_server.user}/{unique('thief')}"
    api.create_repo(mine)
    for value in ({"path": "stolen.bin", "algo": "sha256", "oid": oid},
                  {"path": "stolen.bin", "algo": "sha256", "oid": oid, "size": len(secret)}):
        response = commit_raw(registry_server, mine, token, {"key": "lfsFile", "value": value})
        assert response.status_code == 400 and response.headers["x-error-code"] == "ObjectNotInRepo"
    assert "stolen.bin" not in api.list_repo_files(mine)
    # The batch endpoint is no existence oracle: it asks for the bytes as for any unknown object...
    assert "actions" in lfs_batch(registry_server, mine, token, oid, len(secret))
    verify = httpx.post(f"{registry_server.endpoint}/{mine}.git/info/lfs/objects/verify",
                        json={"oid": oid, "size": len(secret)}, headers=bearer(token))
    assert verify.status_code == 404
    # ...and whoever really has the bytes may upload and commit them.
    lfs_upload(registry_server, mine, token, secret)
    response = commit_raw(registry_server, mine, token, {
        "key": "lfsFile", "value": {"path": "mine.bin", "algo": "sha256", "oid": oid, "size": len(secret)}})
    assert response.status_code == 200, response.text
    wrong_size = commit_raw(registry_server, mine, token, {
        "key": "lfsFile", "value": {"path": "bad.bin", "algo": "sha256", "oid": oid, "size": 1}})
    assert wrong_size.status_code == 400


def test_copy_within_a_repo_still_works(registry_server: RegistryServer, tmp_path: Path) -> None:
    """The client's copies send ``lfsFile`` without ``size``: allowed for the repo's own objects."""
    api, token = registry_server.api(), registry_server.token
    repo_id = f"{registry_server.user}/{unique('copy')}"
    api.create_repo(repo_id)
    data = os.urandom(2048)
    oid = lfs_upload(registry_server, repo_id, token, data)
    assert commit_raw(registry_server, repo_id, token, {
        "key": "lfsFile", "value": {"path": "a.bin", "algo": "sha256", "oid": oid, "size": len(data)}}
    ).status_code == 200
    api.create_commit(repo_id, [CommitOperationCopy("a.bin", "b.bin")], commit_message="copy")
    path = hf_hub_download(repo_id, "b.bin", endpoint=registry_server.endpoint, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == data


def test_lfs_upload_url_of_a_private_repo_does_not_reveal_it(
    registry_server: RegistryServer, victim: tuple[str, str, bytes]
) -> None:
    repo_id, _, _ = victim
    oid = "0" * 64
    base = f"{registry_server.endpoint}/{{}}.git/info/lfs/objects/upload/{oid}?size=1&expires=9999999999&sig=00"
    existing = httpx.put(base.format(repo_id), content=b"x")
    missing = httpx.put(base.format(f"{registry_server.user}/{unique('nothing')}"), content=b"x")
    assert existing.status_code == missing.status_code == 403


# ----------------------------------------------------------------------------- 2. bounded work
def test_front_matter_with_thousands_of_newlines_is_fast(registry_server: RegistryServer) -> None:
    content = "---" + "\n" * 20_000 + "x"
    started = time.monotonic()
    response = httpx.post(f"{registry_server.endpoint}/api/validate-yaml", json={"content": content}, timeout=30)
    assert time.monotonic() - started < 3 and response.status_code in (200, 400)
    assert "errors" in response.json()


LAUGHS = textwrap.dedent(
    """\
    ---
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    tags: [atlas-alignment]
    ---
    # laughs
    """
)


def test_yaml_aliases_are_refused_and_do_not_break_listings(registry_server: RegistryServer) -> None:
    response = httpx.post(f"{registry_server.endpoint}/api/validate-yaml", json={"content": LAUGHS})
    assert response.status_code == 400 and "alias" in response.json()["errors"][0]["message"]
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('laughs')}"
    api.create_repo(repo_id)
    # The client validates cards first; an attacker commits raw.
    readme = {"path": "README.md", "content": base64.b64encode(LAUGHS.encode()).decode(), "encoding": "base64"}
    assert commit_raw(registry_server, repo_id, registry_server.token, {"key": "file", "value": readme}).status_code == 200
    assert api.model_info(repo_id).card_data is None  # read as "no card", not an error
    list(api.list_models(filter="atlas-alignment"))  # still answers for everyone


def test_listings_are_paginated_with_link_headers(registry_server: RegistryServer, tmp_path: Path) -> None:
    api = registry_server.api()
    prefix = unique("page")
    for index in range(3):
        api.create_repo(f"{registry_server.user}/{prefix}-{index}")
    first = httpx.get(f"{registry_server.endpoint}/api/models", params={"search": prefix, "limit": 2})
    assert len(first.json()) == 2 and 'rel="next"' in first.headers["link"]
    second = httpx.get(first.links["next"]["url"])
    ids = [m["id"] for m in first.json() + second.json()]
    assert sorted(ids) == [f"{registry_server.user}/{prefix}-{i}" for i in range(3)]
    assert "link" not in second.headers
    # The client follows the links transparently.
    assert len(list(api.list_models(search=prefix))) == 3

    repo_id = f"{registry_server.user}/{prefix}-0"
    for index in range(3):
        api.upload_file(path_or_fileobj=b"x", path_in_repo=f"d{index}/f.txt", repo_id=repo_id)
    tree = httpx.get(f"{registry_server.endpoint}/api/models/{repo_id}/tree/main", params={"limit": 2})
    assert len(tree.json()) == 2 and "link" in tree.headers
    commits = httpx.get(f"{registry_server.endpoint}/api/models/{repo_id}/commits/main", params={"limit": 2})
    rest = httpx.get(commits.links["next"]["url"]).json()
    assert len(commits.json()) + len(rest) == 4
    assert [c.title for c in api.list_repo_commits(repo_id)][-1] == "initial commit"
    assert len(api.list_repo_tree(repo_id, expand=True) and list(api.list_repo_tree(repo_id, expand=True))) == 4


def test_request_bodies_are_bounded(registry_server: RegistryServer) -> None:
    big = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    anonymous = httpx.post(f"{registry_server.endpoint}/api/repos/create", content=big, timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["x-error-code"]
    authed = httpx.post(f"{registry_server.endpoint}/api/repos/create", content=big,
                        headers=bearer(registry_server.token), timeout=30)
    assert authed.status_code == 413 and authed.headers["x-error-code"] == "PayloadTooLarge"


def test_lfs_put_is_refused_past_its_signed_size(registry_server: RegistryServer) -> None:
    api, token = registry_server.api(), registry_server.token
    repo_id = f"{registry_server.user}/{unique('oversize')}"
    api.create_repo(repo_id)
    data = b"ten bytes!"
    oid = hashlib.sha256(data).hexdigest()
    href = lfs_batch(registry_server, repo_id, token, oid, len(data))["actions"]["upload"]["href"]
    declared = httpx.put(href, content=b"x" * (1024 * 1024))
    assert declared.status_code == 400

    def stream():  # no Content-Length: refused as the bytes pass the signed size
        for _ in range(64):
            yield b"y" * (1024 * 1024)

    try:
        streamed = httpx.put(href, content=stream(), timeout=30)
        assert streamed.status_code == 400
    except httpx.HTTPError:
        pass  # the server may also close the connection early
    assert list((registry_server.root / "tmp").iterdir()) == []
    assert httpx.put(href, content=data).status_code == 200


# ----------------------------------------------------------------------------- 3. hostile input
def _hostile_requests(server: RegistryServer, repo_id: str) -> list[tuple[str, str, dict]]:
    api = f"/api/models/{repo_id}"
    ndjson = {"content-type": "application/x-ndjson"}
    return [
        ("POST", "/api/repos/create", {"content": b"\xff\xfe not utf-8"}),
        ("POST", "/api/repos/create", {"json": {"name": ["x"]}}),
        ("POST", "/api/repos/create", {"json": {"name": "ok-name", "organization": 5}}),
        ("POST", "/api/repos/create", {"content": b"[" * 100_000 + b"]" * 100_000}),
        ("POST", "/api/repos/create", {"content": b'{"name": ' + b"9" * 5000 + b"}"}),
        ("POST", f"{api}/paths-info/main", {"content": b"paths=\xff\xfe"}),
        ("POST", f"{api}/paths-info/main", {"json": {"paths": {"a": 1}}}),
        ("POST", f"{api}/paths-info/main", {"json": [1, 2]}),
        ("POST", f"{api}/preupload/main", {"json": {"files": [1, "x", None]}}),
        ("POST", f"{api}/preupload/main", {"json": {"files": [{"path": "a", "size": 10**400}]}}),
        ("POST", f"{api}/preupload/main", {"json": {"files": [{"path": ["a"], "size": "1"}]}}),
        ("POST", f"{api}/commit/main", {"content": b"\xff\n\xfe", "headers": ndjson}),
        ("POST", f"{api}/commit/main", {"content": b'{"key": "header", "value": []}', "headers": ndjson}),
        ("POST", f"{api}/commit/main", {"content": b'{"key": "header", "value": {"summary": 5}}\n'
                                                   b'{"key": "file", "value": {"path": 7, "content": 1}}',
                                        "headers": ndjson}),
        ("POST", f"{api}/commit/main", {"content": b'{"key": "header", "value": {"summary": "s", '
                                                   b'"parentCommit": {"x": 1}}}', "headers": ndjson}),
        ("POST", f"{api}/commit/main", {"content": b'{"key": "header", "value": {"summary": "s"}}\n'
                                                   b'{"key": "deletedFile", "value": {"path": null}}',
                                        "headers": ndjson}),
        ("POST", f"/{repo_id}.git/info/lfs/objects/batch", {"json": {"operation": "upload", "transfers": 5}}),
        ("POST", f"/{repo_id}.git/info/lfs/objects/batch", {"json": {"operation": "upload", "objects": "x"}}),
        ("POST", f"/{repo_id}.git/info/lfs/objects/verify", {"json": {"oid": ["x"], "size": "1"}}),
        ("POST", f"{api}/tag/main", {"json": {"tag": {"x": 1}}}),
        ("POST", f"{api}/tag/main", {"json": {"tag": "t1", "message": {"x": 1}}}),
        ("POST", f"{api}/tag/main", {"json": {"tag": "bad\nname"}}),
        ("POST", f"{api}/branch/dev-x", {"json": {"startingPoint": 12}}),
        ("PUT", f"{api}/settings", {"json": {"private": [1]}}),
        ("GET", "/api/models/atlas-lab/a%00b", {}),
        ("GET", "/api/models/atlas-lab%0d%0ax/n", {}),
        ("GET", f"{api}/tree/main/%00", {}),
        ("GET", f"{api}/commits/main?limit=99999999999999999999", {}),
        ("GET", f"{api}/commits/main?cursor=zzz", {}),
        ("GET", f"/api/models?limit={'9' * 5000}", {}),
        ("GET", "/api/models?sort=nonsense", {}),
        ("GET", f"/{repo_id}/resolve/%00/x", {}),
        ("HEAD", f"/{repo_id}/resolve/main/..%2F..%2Fetc%2Fpasswd", {}),
        ("POST", "/api/validate-yaml", {"content": b"\xff"}),
        ("POST", "/api/validate-yaml", {"json": {"content": 5}}),
    ]


def test_hostile_input_gets_4xx_with_error_code(registry_server: RegistryServer) -> None:
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('hostile')}"
    api.create_repo(repo_id)
    with httpx.Client(base_url=registry_server.endpoint, headers=bearer(registry_server.token), timeout=30) as client:
        for method, path, kwargs in _hostile_requests(registry_server, repo_id):
            headers = kwargs.pop("headers", {})
            response = client.request(method, path, headers=headers, **kwargs)
            assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:300])
            assert response.headers.get("x-error-code"), (method, path)
            assert "\0" not in response.headers.get("x-error-message", "")
    # LFS reports bad objects one by one, inside a 200 (the client raises on each).
    batch = httpx.post(f"{registry_server.endpoint}/{repo_id}.git/info/lfs/objects/batch",
                       json={"operation": "upload", "objects": [1, {"oid": "a" * 64, "size": 10**30}]},
                       headers=bearer(registry_server.token))
    assert batch.status_code == 200 and all(obj["error"]["code"] == 422 for obj in batch.json()["objects"])
    assert api.model_info(repo_id).sha  # the server still answers
    assert "Internal error" not in registry_server.log()


def test_unreadable_paths_are_refused(registry_server: RegistryServer) -> None:
    api, token = registry_server.api(), registry_server.token
    repo_id = f"{registry_server.user}/{unique('paths')}"
    api.create_repo(repo_id)
    for path in ("new\nline.txt", "x" * 300 + ".txt", "/".join(["d"] * 2000) + "/f"):
        response = commit_raw(registry_server, repo_id, token,
                              {"key": "file", "value": {"path": path, "content": "eA==", "encoding": "base64"}})
        assert response.status_code == 400, path[:40]
    assert api.list_repo_files(repo_id) == [".gitattributes"]


# ----------------------------------------------------------------------------- 6. silent wrong results
def test_private_flag_string_false_makes_a_public_repo(registry_server: RegistryServer) -> None:
    name = unique("public")
    response = httpx.post(f"{registry_server.endpoint}/api/repos/create",
                          json={"name": name, "organization": registry_server.user, "private": "false"},
                          headers=bearer(registry_server.token))
    assert response.status_code == 200
    assert registry_server.api(token=False).model_info(f"{registry_server.user}/{name}").private is False
    bad = httpx.post(f"{registry_server.endpoint}/api/repos/create",
                     json={"name": unique("x"), "organization": registry_server.user, "private": "nope"},
                     headers=bearer(registry_server.token))
    assert bad.status_code == 400


def test_corrupt_blob_is_never_served(registry_server: RegistryServer, tmp_path: Path) -> None:
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('corrupt')}"
    api.create_repo(repo_id)
    content = os.urandom(1000)
    api.upload_file(path_or_fileobj=content, path_in_repo="data.bin", repo_id=repo_id)
    digest = hashlib.sha256(content).hexdigest()
    blob = registry_server.root / "blobs" / digest[:2] / digest[2:]
    flipped = bytearray(blob.read_bytes())
    flipped[10] ^= 0xFF
    blob.write_bytes(bytes(flipped))
    sha = api.model_info(repo_id).sha
    response = httpx.get(f"{registry_server.endpoint}/{repo_id}/resolve/{sha}/data.bin")
    assert response.status_code == 409 and response.headers["x-error-code"] == "CorruptObject"
    assert response.content != bytes(flipped)
    assert (registry_server.root / "quarantine").exists()


# ----------------------------------------------------------------------------- 7. medium
def test_repo_ids_are_case_insensitive(registry_server: RegistryServer) -> None:
    api = registry_server.api()
    name = unique("CamelCase")
    api.create_repo(f"{registry_server.user}/{name}")
    assert api.model_info(f"{registry_server.user}/{name.lower()}").id == f"{registry_server.user}/{name}"
    response = httpx.post(f"{registry_server.endpoint}/api/repos/create",
                          json={"name": name.upper(), "organization": registry_server.user},
                          headers=bearer(registry_server.token))
    assert response.status_code == 409 and response.json()["url"].endswith(name)


def test_database_is_private_and_ids_are_not_counters(registry_server: RegistryServer) -> None:
    mode = stat.S_IMODE((registry_server.root / "registry.sqlite3").stat().st_mode)
    assert mode == 0o600
    api = registry_server.api()
    ids = []
    for _ in range(2):
        repo_id = f"{registry_server.user}/{unique('ids')}"
        api.create_repo(repo_id)
        ids.append(int(httpx.get(f"{registry_server.endpoint}/api/models/{repo_id}",
                                 headers=bearer(registry_server.token)).json()["_id"], 16))
    assert abs(ids[1] - ids[0]) > 1000


def test_tokens_expire_and_can_be_revoked(registry_server: RegistryServer) -> None:
    from atlas_align.registry.server.store import RegistryStore

    def status(token: str) -> int:
        return httpx.get(f"{registry_server.endpoint}/api/whoami-v2", headers=bearer(token)).status_code

    store = RegistryStore(registry_server.root)
    assert status(store.create_token(registry_server.user, expires_in_s=-1)) == 401
    live = store.create_token(registry_server.user)
    assert status(live) == 200
    [entry] = [t for t in store.list_tokens() if t["id"] == hashlib.sha256(live.encode()).hexdigest()[:12]]
    assert store.revoke_token(entry["id"]) and status(live) == 401
