"""End-to-end tests of the registry server with the real, unpatched ``huggingface_hub`` client.

Client calls that take ``endpoint=`` run in this process; calls that read ``constants.ENDPOINT``
(``ModelCard``, ``ModelHubMixin``) and uploads that need ``HF_HUB_DISABLE_XET=1`` (LFS) run in a
fresh interpreter via ``registry_server.run_client``, because the client reads those settings
when it is imported. ``hub_online`` lifts ``HF_HUB_OFFLINE`` (set by the suite's conftest) for
in-process calls, which all name the local ``endpoint=``.
"""

from __future__ import annotations

import hashlib
import json
import random
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.registry_server_fixture import FIXTURE_LFS_THRESHOLD, RegistryServer

pytestmark = [pytest.mark.usefixtures("hub_online"), pytest.mark.integration]

CARD = textwrap.dedent(
    """\
    ---
    library_name: atlas-align
    license: apache-2.0
    base_model: openai-community/gpt2
    tags:
    - atlas-alignment
    - interpretability
    ---
    # Tiny alignment
    A test artifact.
    """
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_small_folder(folder: Path, card: str = CARD) -> Path:
    (folder / "nested").mkdir(parents=True)
    (folder / "README.md").write_text(card)
    (folder / "config.json").write_text(json.dumps({"layers": 2}))
    (folder / "nested" / "weights.txt").write_text("0.1 0.2 0.3\n")
    return folder


@pytest.fixture
def small_repo(registry_server: RegistryServer, hub_online: None, tmp_path: Path) -> str:
    """A public repo holding README (with tags), config.json and nested/weights.txt."""
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('small')}"
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=write_small_folder(tmp_path / "small"), commit_message="add files")
    return repo_id


# ----------------------------------------------------------------------------- repos
def test_create_repo_returns_url_and_initial_commit(registry_server: RegistryServer) -> None:
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('create')}"
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id and url.endpoint == registry_server.endpoint
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id  # the 409 carries "url"
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo(repo_id)
    assert excinfo.value.response.status_code == 409
    info = api.model_info(repo_id)
    assert len(info.sha) == 40 and [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert api.repo_exists(repo_id) and not api.repo_exists(f"{registry_server.user}/{unique('missing')}")
    api.delete_repo(repo_id)
    assert not api.repo_exists(repo_id)
    api.delete_repo(repo_id, missing_ok=True)


# ----------------------------------------------------------------------------- regular uploads and downloads
def test_upload_folder_regular_files_then_download(
    registry_server: RegistryServer, small_repo: str, tmp_path: Path
) -> None:
    api = registry_server.api()
    expected = [".gitattributes", "README.md", "config.json", "nested/weights.txt"]
    assert sorted(api.list_repo_files(small_repo)) == expected
    tree = {entry.path: entry for entry in api.list_repo_tree(small_repo, recursive=True)}
    assert "nested" in tree and tree["nested/weights.txt"].size == len("0.1 0.2 0.3\n")
    assert [entry.path for entry in api.list_repo_tree(small_repo, path_in_repo="nested")] == ["nested/weights.txt"]
    assert {p.path for p in api.get_paths_info(small_repo, ["config.json", "nested", "absent"])} == {
        "config.json",
        "nested",
    }

    cache = tmp_path / "cache"
    path = hf_hub_download(small_repo, "nested/weights.txt", endpoint=registry_server.endpoint, cache_dir=cache,
                           token=False)
    assert Path(path).read_text() == "0.1 0.2 0.3\n"
    assert Path(path).parent.parent.name == api.model_info(small_repo).sha  # snapshot folder = commit sha
    cached = hf_hub_download(small_repo, "nested/weights.txt", cache_dir=cache, local_files_only=True)
    assert cached == path

    snapshot = Path(snapshot_download(small_repo, endpoint=registry_server.endpoint, cache_dir=cache, token=False))
    assert json.loads((snapshot / "config.json").read_text()) == {"layers": 2}
    assert (snapshot / "README.md").read_text() == CARD


def test_unchanged_files_are_not_recommitted(
    registry_server: RegistryServer, small_repo: str, tmp_path: Path
) -> None:
    api = registry_server.api()
    head = api.model_info(small_repo).sha
    again = api.upload_folder(repo_id=small_repo, folder_path=write_small_folder(tmp_path / "same"))
    assert again.oid == head and api.model_info(small_repo).sha == head


def test_concurrent_commits_all_land(registry_server: RegistryServer, small_repo: str) -> None:
    api = registry_server.api()

    def push(index: int) -> None:
        api.upload_file(path_or_fileobj=f"{index}".encode(), path_in_repo=f"parallel/{index}.txt", repo_id=small_repo)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(push, range(8)))
    files = api.list_repo_files(small_repo)
    assert {f"parallel/{i}.txt" for i in range(8)} <= set(files)
    assert len(api.list_repo_commits(small_repo)) == 2 + 8


def test_resolve_headers_and_range(registry_server: RegistryServer, small_repo: str) -> None:
    sha = registry_server.api().model_info(small_repo).sha
    base = f"{registry_server.endpoint}/{small_repo}/resolve"
    head = httpx.head(f"{base}/main/config.json")
    assert head.status_code == 307 and head.headers["location"] == f"/{small_repo}/resolve/{sha}/config.json"
    assert head.headers["x-repo-commit"] == sha
    content = json.dumps({"layers": 2}).encode()
    pinned = httpx.get(f"{base}/{sha}/config.json")
    assert pinned.content == content and pinned.headers["x-repo-commit"] == sha
    git_oid = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    assert pinned.headers["etag"] == f'"{git_oid}"'
    ranged = httpx.get(f"{base}/{sha}/config.json", headers={"Range": "bytes=2-7"})
    assert ranged.status_code == 206 and ranged.content == content[2:8]


# ----------------------------------------------------------------------------- LFS, tags, revisions
def test_lfs_upload_tag_keeps_old_bytes(registry_server: RegistryServer, tmp_path: Path) -> None:
    big = FIXTURE_LFS_THRESHOLD + 1024 * 1024  # over the threshold => LFS basic transfer
    rng = random.Random(0)
    for version in ("v1", "v2"):
        folder = tmp_path / version
        folder.mkdir()
        (folder / "weights.bin").write_bytes(rng.randbytes(big))
        (folder / "config.json").write_text(json.dumps({"version": version}))
    repo_id = f"{registry_server.user}/{unique('lfs')}"
    code = textwrap.dedent(
        f"""
        import json
        from huggingface_hub import HfApi, constants
        assert constants.HF_HUB_DISABLE_XET
        api = HfApi()
        api.create_repo({repo_id!r})
        first = api.upload_folder(repo_id={repo_id!r}, folder_path={str(tmp_path / "v1")!r}, commit_message="v1")
        api.create_tag({repo_id!r}, tag="v1")
        second = api.upload_folder(repo_id={repo_id!r}, folder_path={str(tmp_path / "v2")!r}, commit_message="v2")
        print(json.dumps({{"first": first.oid, "second": second.oid}}))
        """
    )
    shas = registry_server.run_client(code, tmp_path / "hf_home", token=registry_server.token)
    v1_hash, v2_hash = sha256_of(tmp_path / "v1" / "weights.bin"), sha256_of(tmp_path / "v2" / "weights.bin")

    api = registry_server.api()
    sibling = {s.rfilename: s for s in api.model_info(repo_id, revision="v1", files_metadata=True).siblings}
    assert sibling["weights.bin"].lfs is not None and sibling["weights.bin"].lfs.sha256 == v1_hash
    assert sibling["config.json"].lfs is None
    assert (registry_server.root / "blobs" / v1_hash[:2] / v1_hash[2:]).stat().st_size == big

    cache, endpoint = tmp_path / "cache", registry_server.endpoint
    by_tag = Path(snapshot_download(repo_id, revision="v1", endpoint=endpoint, cache_dir=cache, token=False))
    assert by_tag.name == shas["first"] and sha256_of(by_tag / "weights.bin") == v1_hash
    by_sha = Path(snapshot_download(repo_id, revision=shas["first"], endpoint=endpoint, cache_dir=cache, token=False))
    assert json.loads((by_sha / "config.json").read_text()) == {"version": "v1"}
    latest = hf_hub_download(repo_id, "weights.bin", endpoint=endpoint, cache_dir=cache, token=False)
    assert sha256_of(latest) == v2_hash and Path(latest).parent.name == shas["second"]
    old = hf_hub_download(repo_id, "weights.bin", revision="v1", endpoint=endpoint, cache_dir=cache, token=False)
    assert sha256_of(old) == v1_hash


def test_refs_and_commits(registry_server: RegistryServer, small_repo: str) -> None:
    api = registry_server.api()
    head = api.model_info(small_repo).sha
    api.create_tag(small_repo, tag="v1", tag_message="first release")
    api.create_tag(small_repo, tag="v1", exist_ok=True)
    api.create_branch(small_repo, branch="dev")
    refs = api.list_repo_refs(small_repo)
    assert {(b.name, b.target_commit) for b in refs.branches} == {("main", head), ("dev", head)}
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1", "refs/tags/v1", head)]
    commits = api.list_repo_commits(small_repo)
    assert [c.title for c in commits] == ["add files", "initial commit"] and commits[0].commit_id == head
    assert commits[0].authors == [registry_server.user]
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=small_repo, revision="dev")
    assert "dev.txt" not in api.list_repo_files(small_repo)
    assert "dev.txt" in api.list_repo_files(small_repo, revision="dev")
    api.delete_tag(small_repo, tag="v1")
    api.delete_branch(small_repo, branch="dev")
    refs = api.list_repo_refs(small_repo)
    assert refs.tags == [] and [b.name for b in refs.branches] == ["main"]


# ----------------------------------------------------------------------------- search and cards
def test_list_models_filters_on_card_tags(registry_server: RegistryServer, small_repo: str, tmp_path: Path) -> None:
    api = registry_server.api()
    other = f"{registry_server.user}/{unique('untagged')}"
    api.create_repo(other)
    found = {m.id for m in api.list_models(filter="atlas-alignment")}
    assert small_repo in found and other not in found
    assert small_repo in {m.id for m in api.list_models(filter=["atlas-alignment", "base_model:openai-community/gpt2"])}
    assert small_repo not in {m.id for m in api.list_models(filter=["atlas-alignment", "license:mit"])}
    assert {m.id for m in api.list_models(search=small_repo.split("/")[1])} == {small_repo}
    assert small_repo in {m.id for m in api.list_models(author=registry_server.user)}
    assert not list(api.list_models(author="nobody-here"))
    [model] = [m for m in api.list_models(search=small_repo, cardData=True)]
    assert model.card_data.library_name == "atlas-align" and "license:apache-2.0" in model.tags
    [full] = list(api.list_models(search=small_repo, full=True))
    assert "config.json" in {s.rfilename for s in full.siblings}
    info = api.model_info(small_repo)
    assert info.library_name == "atlas-align" and info.card_data.tags == ["atlas-alignment", "interpretability"]


def test_model_card_and_hub_mixin_via_hf_endpoint(
    registry_server: RegistryServer, small_repo: str, tmp_path: Path
) -> None:
    mixin_repo = unique("mixin")
    code = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from huggingface_hub import ModelCard, ModelHubMixin, hf_hub_download

        class Tiny(ModelHubMixin, tags=["atlas-alignment"]):
            def __init__(self, width: int = 3):
                self.width = width
            def _save_pretrained(self, save_directory: Path) -> None:
                (save_directory / "weights.json").write_text(json.dumps([0.5] * self.width))
            @classmethod
            def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only, token,
                                 **kwargs):
                path = hf_hub_download(model_id, "weights.json", revision=revision, cache_dir=cache_dir, token=token)
                model = cls(**kwargs)
                model.weights = json.loads(Path(path).read_text())
                return model

        card = ModelCard.load({small_repo!r})
        url = Tiny(width=4).push_to_hub({mixin_repo!r})
        loaded = Tiny.from_pretrained({registry_server.user + "/" + mixin_repo!r})
        card.data.tags.append("edited")
        card.push_to_hub({small_repo!r})
        print(json.dumps({{"tags": card.data.tags, "width": loaded.width, "weights": loaded.weights,
                           "text": card.text}}))
        """
    )
    result = registry_server.run_client(code, tmp_path / "hf_home", token=registry_server.token)
    assert result["tags"] == ["atlas-alignment", "interpretability", "edited"]
    assert "# Tiny alignment" in result["text"]
    assert result["width"] == 4 and result["weights"] == [0.5] * 4
    api = registry_server.api()
    assert "edited" in api.model_info(small_repo).tags
    assert "atlas-alignment" in api.model_info(f"{registry_server.user}/{mixin_repo}").tags


def test_validate_yaml_rejects_broken_metadata(registry_server: RegistryServer) -> None:
    url = f"{registry_server.endpoint}/api/validate-yaml"
    assert httpx.post(url, json={"content": CARD, "repoType": "model"}).json() == {"errors": [], "warnings": []}
    bad = httpx.post(url, json={"content": "---\ntags: [unclosed\n---\n", "repoType": "model"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"]


# ----------------------------------------------------------------------------- refusals
def test_writes_need_a_write_token_of_the_namespace(registry_server: RegistryServer, small_repo: str) -> None:
    anonymous = registry_server.api(token=False)
    with pytest.raises(HfHubHTTPError) as excinfo:
        anonymous.create_repo(f"{registry_server.user}/{unique('anon')}")
    assert excinfo.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as excinfo:
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=small_repo)
    assert excinfo.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as excinfo:
        registry_server.api(token="hf_not_a_real_token").model_info(small_repo)
    assert excinfo.value.response.status_code == 401 and not isinstance(excinfo.value, RepositoryNotFoundError)
    assert "Invalid credentials" in str(excinfo.value)
    reader = registry_server.api(token=registry_server.make_token(registry_server.user, write=False))
    with pytest.raises(HfHubHTTPError) as excinfo:
        reader.create_tag(small_repo, tag="nope")
    assert excinfo.value.response.status_code == 403
    stranger = registry_server.api(token=registry_server.make_token(unique("stranger")))
    with pytest.raises(HfHubHTTPError) as excinfo:
        stranger.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=small_repo)
    assert excinfo.value.response.status_code == 403


def test_private_repo_is_invisible_without_owner_token(registry_server: RegistryServer, tmp_path: Path) -> None:
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('private')}"
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="secret.txt", repo_id=repo_id)
    assert api.model_info(repo_id).private is True
    stranger = registry_server.api(token=registry_server.make_token(unique("stranger")))
    for client in (registry_server.api(token=False), stranger):
        with pytest.raises(RepositoryNotFoundError):
            client.model_info(repo_id)
        assert repo_id not in {m.id for m in client.list_models(author=registry_server.user)}
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "secret.txt", endpoint=registry_server.endpoint, cache_dir=tmp_path, token=False)
    path = hf_hub_download(repo_id, "secret.txt", endpoint=registry_server.endpoint, cache_dir=tmp_path,
                           token=registry_server.token)
    assert Path(path).read_bytes() == b"secret"


def test_missing_repo_revision_and_file_raise_client_errors(
    registry_server: RegistryServer, small_repo: str, tmp_path: Path
) -> None:
    api, endpoint = registry_server.api(), registry_server.endpoint
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{registry_server.user}/{unique('missing')}")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{registry_server.user}/{unique('missing')}", "x", endpoint=endpoint, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(small_repo, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(small_repo, "config.json", revision="refs/pr/1", endpoint=endpoint, cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(small_repo, "no/such/file.bin", endpoint=endpoint, cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(small_repo, path_in_repo="no-such-dir"))
    assert not api.file_exists(small_repo, "no/such/file.bin") and api.file_exists(small_repo, "config.json")


# ----------------------------------------------------------------------------- atomicity
def test_failed_commit_leaves_previous_revision_intact(
    registry_server: RegistryServer, small_repo: str, tmp_path: Path
) -> None:
    api = registry_server.api()
    before = api.model_info(small_repo).sha
    auth = {"authorization": f"Bearer {registry_server.token}"}
    missing_oid = hashlib.sha256(b"never uploaded").hexdigest()
    lines = [
        {"key": "header", "value": {"summary": "half a commit"}},
        {"key": "file", "value": {"path": "config.json", "content": "e30=", "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": missing_oid, "size": 14}},
    ]
    response = httpx.post(
        f"{registry_server.endpoint}/api/models/{small_repo}/commit/main",
        content="\n".join(json.dumps(line) for line in lines),
        headers={**auth, "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 400 and "never uploaded" in response.json()["error"]
    assert api.model_info(small_repo).sha == before
    path = hf_hub_download(small_repo, "config.json", endpoint=registry_server.endpoint, cache_dir=tmp_path)
    assert json.loads(Path(path).read_text()) == {"layers": 2}

    # A corrupted LFS upload is refused and stores nothing under the announced oid.
    batch = httpx.post(
        f"{registry_server.endpoint}/{small_repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": missing_oid, "size": 14}]},
        headers=auth,
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=b"something else").status_code == 400
    assert not (registry_server.root / "blobs" / missing_oid[:2] / missing_oid[2:]).exists()
    assert httpx.put(href.replace("sig=", "sig=0"), content=b"never uploaded").status_code == 403

    # A stale parentCommit is refused too.
    lines[0]["value"]["parentCommit"] = "0" * 40
    stale = httpx.post(
        f"{registry_server.endpoint}/api/models/{small_repo}/commit/main",
        content="\n".join(json.dumps(line) for line in lines[:2]),
        headers={**auth, "content-type": "application/x-ndjson"},
    )
    assert stale.status_code == 412 and api.model_info(small_repo).sha == before


# ----------------------------------------------------------------------------- datasets and smaller endpoints
def test_dataset_repo_settings_and_expanded_listings(registry_server: RegistryServer, tmp_path: Path) -> None:
    api = registry_server.api()
    repo_id = f"{registry_server.user}/{unique('corpus')}"
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/train.csv", repo_id=repo_id,
                    repo_type="dataset", commit_message="add data")
    assert repo_id in {d.id for d in api.list_datasets(author=registry_server.user)}
    assert repo_id not in {m.id for m in api.list_models(author=registry_server.user)}
    path = hf_hub_download(repo_id, "data/train.csv", repo_type="dataset", endpoint=registry_server.endpoint,
                           cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == b"a,b\n1,2\n"
    [entry] = api.get_paths_info(repo_id, ["data/train.csv"], repo_type="dataset", expand=True)
    assert entry.last_commit.title == "add data"
    folder = next(e for e in api.list_repo_tree(repo_id, repo_type="dataset", expand=True) if e.path == "data")
    assert folder.last_commit.title == "add data"

    api.update_repo_settings(repo_id, repo_type="dataset", private=True)
    with pytest.raises(RepositoryNotFoundError):
        registry_server.api(token=False).dataset_info(repo_id)
    assert api.dataset_info(repo_id).private is True
    assert api.whoami()["name"] == registry_server.user


def test_upload_mode_policy_and_xet_refusal(tmp_path: Path) -> None:
    """Without --lfs-threshold every file is inlined, which also suits clients that use Xet."""
    from starlette.testclient import TestClient

    from atlas_align.registry.server.app import create_app
    from atlas_align.registry.server.store import create_token

    token = create_token(tmp_path, "lab")
    auth = {"authorization": f"Bearer {token}"}
    files = [{"path": "big.bin", "sample": "", "size": 50 * 1024 * 1024}, {"path": "a", "sample": "", "size": 1}]
    for threshold, expected in ((None, ["regular", "regular"]), (FIXTURE_LFS_THRESHOLD, ["lfs", "regular"])):
        with TestClient(create_app(tmp_path, lfs_threshold=threshold)) as client:
            client.post("/api/repos/create", json={"name": "m", "organization": "lab"}, headers=auth)
            answer = client.post("/api/models/lab/m/preupload/main", json={"files": files}, headers=auth).json()
            assert [f["uploadMode"] for f in answer["files"]] == expected
            assert all(f["shouldIgnore"] is False for f in answer["files"])
            refusal = client.get("/api/models/lab/m/xet-write-token/main", headers=auth)
            assert refusal.status_code == 400 and "HF_HUB_DISABLE_XET" in refusal.json()["error"]
            assert client.get("/api/agent-harnesses").status_code == 404
            missing = client.head("/lab/m/resolve/main/nope.txt")
            assert missing.headers["x-error-code"] == "EntryNotFound" and len(missing.headers["x-repo-commit"]) == 40
