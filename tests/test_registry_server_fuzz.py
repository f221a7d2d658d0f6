"""Seeded fuzz over every endpoint of the registry server (issue 12): random JSON / NDJSON / form
bodies, paths, repo ids, revisions and headers, with and without a token.

The invariant: no 5xx, every error carries ``X-Error-Code``, no exception in the server log, the
server still answers, and nothing appears outside its root. Bounded (a few hundred requests, a
fixed seed) so it runs in the normal suite; ``ATLAS_FUZZ_REQUESTS`` raises the count.
"""

from __future__ import annotations

import json
import os
import random
import string

import httpx
import pytest

from tests.registry_server_fixture import RegistryServer

pytestmark = [pytest.mark.usefixtures("hub_online"), pytest.mark.integration]

REQUESTS = int(os.environ.get("ATLAS_FUZZ_REQUESTS", "400"))
SEED = int(os.environ.get("ATLAS_FUZZ_SEED", "12"))

ENDPOINTS = [
    ("GET", "/api/whoami-v2"), ("POST", "/api/validate-yaml"), ("POST", "/api/repos/create"),
    ("DELETE", "/api/repos/delete"), ("GET", "/api/models"), ("GET", "/api/datasets"),
    ("GET", "/api/models/{repo}"), ("GET", "/api/models/{repo}/revision/{rev}"),
    ("GET", "/api/models/{repo}/tree/{rev}/{path}"), ("POST", "/api/models/{repo}/paths-info/{rev}"),
    ("GET", "/api/models/{repo}/refs"), ("GET", "/api/models/{repo}/commits/{rev}"),
    ("POST", "/api/models/{repo}/preupload/{rev}"), ("POST", "/api/models/{repo}/commit/{rev}"),
    ("POST", "/api/models/{repo}/tag/{rev}"), ("DELETE", "/api/models/{repo}/tag/{rev}"),
    ("POST", "/api/models/{repo}/branch/{rev}"), ("DELETE", "/api/models/{repo}/branch/{rev}"),
    ("PUT", "/api/models/{repo}/settings"), ("GET", "/{repo}/resolve/{rev}/{path}"),
    ("HEAD", "/{repo}/resolve/{rev}/{path}"), ("POST", "/{repo}.git/info/lfs/objects/batch"),
    ("PUT", "/{repo}.git/info/lfs/objects/upload/{oid}"), ("POST", "/{repo}.git/info/lfs/objects/verify"),
    ("PATCH", "/api/models/{repo}"), ("GET", "/{junk}"),
]
KEYS = ["name", "organization", "type", "private", "visibility", "files", "path", "size", "sample", "content",
        "tag", "message", "startingPoint", "operation", "transfers", "objects", "oid", "paths", "expand", "gated",
        "key", "value", "summary", "parentCommit", "encoding", "algo"]


def _scalar(rng: random.Random) -> object:
    return rng.choice([
        None, True, False, 0, -1, 2**63, 10**30, 1.5, float("1e308"), "", "main", "a/b", "../..", "\u0000",
        "%00", "\ud7ff", "x" * rng.randint(0, 3000), "".join(rng.choices(string.printable, k=rng.randint(0, 40))),
        "0" * 64, "a" * 40, "refs/heads/main", "README.md",
    ])


def _value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return _scalar(rng)
    if roll < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _body(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    roll = rng.random()
    if roll < 0.45:
        return json.dumps(_value(rng, 1)).encode(), {"content-type": "application/json"}
    if roll < 0.65:
        lines = [json.dumps({"key": rng.choice(["header", "file", "lfsFile", "deletedFile", "deletedFolder", "x"]),
                             "value": _value(rng, 2)}) for _ in range(rng.randint(0, 4))]
        return "\n".join(lines).encode(), {"content-type": "application/x-ndjson"}
    if roll < 0.75:
        return b"paths=" + rng.randbytes(rng.randint(0, 20)), {"content-type": "application/x-www-form-urlencoded"}
    if roll < 0.85:
        return b"[" * rng.randint(1, 50_000), {"content-type": "application/json"}
    return rng.randbytes(rng.randint(0, 2000)), {}


def _segment(rng: random.Random, valid: list[str]) -> str:
    return rng.choice(valid + ["%00", "%0a", "..", "%2e%2e", "a%2Fb", "x" * 300, "%ff%fe", "Ä", "-", ".git", ""])


def test_fuzz_every_endpoint(registry_server: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    rng = random.Random(SEED)
    api = registry_server.api()
    repo = f"{registry_server.user}/fuzz-target"
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="dir/file.txt", repo_id=repo)
    outside = sorted(p.name for p in registry_server.root.parent.iterdir())
    tokens = [registry_server.token, "hf_not_a_token", registry_server.make_token("fuzz-reader", write=False), None]
    failures = []
    with httpx.Client(base_url=registry_server.endpoint, timeout=30) as client:
        for index in range(REQUESTS):
            method, template = rng.choice(ENDPOINTS)
            url = template.format(
                repo=rng.choice([repo, f"{_segment(rng, ['atlas-lab'])}/{_segment(rng, ['fuzz-target', 'x'])}"]),
                rev=_segment(rng, ["main", "refs%2Fheads%2Fmain", "v1", "a" * 40]),
                path=_segment(rng, ["dir/file.txt", "dir", "README.md"]),
                oid=rng.choice(["0" * 64, "f" * 64]), junk=_segment(rng, ["api", "x/y/z"]),
            )
            if rng.random() < 0.3:
                url += "?" + rng.choice(["limit=-1", "limit=abc", "cursor=%00", "expand=true&recursive=true",
                                         "size=1&expires=1&sig=zz", "sort=likes", "full=true&limit=1",
                                         "filter=atlas-alignment", "blobs=true", "create_pr=1"])
            body, headers = _body(rng) if method in ("POST", "PUT", "DELETE", "PATCH") else (b"", {})
            token = rng.choice(tokens)
            if token:
                headers["authorization"] = rng.choice([f"Bearer {token}", f"Basic {token}", "Bearer"])
            try:
                response = client.request(method, url, content=body, headers=headers)
            except httpx.HTTPError as exc:  # the server closed the connection: also a failure
                failures.append((index, method, url[:120], repr(exc)))
                continue
            if response.status_code >= 500 or (response.status_code >= 400 and "x-error-code" not in response.headers):
                failures.append((index, method, url[:120], response.status_code, response.text[:200]))
    assert not failures, failures[:10]
    assert api.model_info(repo).sha
    assert "Internal error" not in registry_server.log() and "Traceback" not in registry_server.log()
    assert sorted(p.name for p in registry_server.root.parent.iterdir()) == outside
