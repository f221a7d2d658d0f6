"""align → push with a tag → from_pretrained by tag in another process and cache → search/steer,
against the real registry server with the unmodified huggingface_hub client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from atlas_align.registry.hub import list_alignments, list_versions, push_folder
from tests.test_alignment import make_alignment

LOAD_AND_USE = """
import json, torch
from atlas_align import AtlasAlignment
from tests.tiny_models import tiny_llama, word_tokenizer
model, tok = tiny_llama(), word_tokenizer("bos")
inputs = tok(["the dog"], return_tensors="pt")
results = {{}}
for i, rev in enumerate({revs!r}):  # a fresh cache per revision: nothing is shared between loads
    al = AtlasAlignment.from_pretrained({repo!r}, revision=rev, cache_dir={cache!r} + str(i))
    with al.steer(model, "cats", strength=50.0):
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=0)
    results[rev] = {{"sum": float(al.T.double().sum()), "sha": al.config.weights_sha256,
                    "search": [f.label for f, _ in al.search("dog").atlas_features], "generated": out.shape[1]}}
print(json.dumps(results))
"""


pytestmark = pytest.mark.integration


@pytest.fixture
def published(registry_server, hub_online, tmp_path):
    api = registry_server.api()
    repo = f"{registry_server.user}/tiny-align-{tmp_path.name[-6:]}"
    v1, v2 = make_alignment(seed=1), make_alignment(seed=2)
    v1.save_pretrained(tmp_path / "v1")
    v2.save_pretrained(tmp_path / "v2")
    first = push_folder(api, tmp_path / "v1", repo, tag="v1")
    second = push_folder(api, tmp_path / "v2", repo, tag="v2")
    return api, repo, v1, v2, first, second


def test_tag_keeps_returning_the_old_matrix(published, registry_server, tmp_path):
    api, repo, v1, v2, first, second = published
    cases = {"v1": v1, "v2": v2, "main": v2, first["commit"]: v1}
    results = registry_server.run_client(LOAD_AND_USE.format(repo=repo, revs=list(cases), cache=str(tmp_path / "cache")), tmp_path / "home")
    for rev, expected in cases.items():
        got = results[rev]
        assert got["sha"] == expected.config.weights_sha256, rev
        assert got["sum"] == pytest.approx(float(expected.T.double().sum()), abs=1e-9)
        assert got["search"][:2] == ["dogs", "dog breeds"] and got["generated"] == 7


def test_versions_and_discovery(published):
    api, repo, *_ , first, second = published
    versions = list_versions(api, repo)
    assert {t["name"]: t["commit"] for t in versions["tags"]} == {"v1": first["commit"], "v2": second["commit"]}
    assert versions["commits"][0]["commit"] == second["commit"]
    assert repo in [r["id"] for r in list_alignments(api)]


def test_tampered_weights_are_refused_after_download(registry_server, hub_online, tmp_path):
    api = registry_server.api()
    repo = f"{registry_server.user}/tampered-{tmp_path.name[-6:]}"
    al = make_alignment()
    al.save_pretrained(tmp_path / "a")
    weights = tmp_path / "a" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    push_folder(api, tmp_path / "a", repo)
    code = f"""
import json
from atlas_align import AtlasAlignment
from atlas_align.errors import IntegrityError
try:
    AtlasAlignment.from_pretrained({repo!r})
    print(json.dumps("loaded"))
except IntegrityError as exc:
    print(json.dumps(str(exc)))
"""
    message = registry_server.run_client(code, tmp_path / "cache")
    assert "sha256" in message and "modified or corrupted" in message


def test_cli_push_without_token_is_refused_clearly(registry_server, tmp_path):
    make_alignment().save_pretrained(tmp_path / "a")
    env = registry_server.client_env(tmp_path / "home")
    result = subprocess.run([sys.executable, "-m", "atlas_align.cli.main", "push", str(tmp_path / "a"), f"{registry_server.user}/no-token"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "HF_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_cli_pull_and_versions(published, registry_server, tmp_path):
    api, repo, v1, *_ = published
    env = registry_server.client_env(tmp_path / "home", token=registry_server.token)
    run = lambda *args: subprocess.run([sys.executable, "-m", "atlas_align.cli.main", *args], env=env, capture_output=True, text=True, timeout=120)
    pulled = run("pull", repo, "--revision", "v1", "--out", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "model.safetensors").read_bytes() == (tmp_path / "v1" / "model.safetensors").read_bytes()
    versions = run("registry", "versions", repo)
    assert versions.returncode == 0 and "v1" in versions.stdout and "v2" in versions.stdout
