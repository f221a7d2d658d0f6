"""Every test gets its own HF cache and a fixed seed; tiny random-init models are built from configs.

``huggingface_hub`` reads ``HF_HOME`` and its cache paths into ``huggingface_hub.constants`` once,
at import, so setting the environment variable per test is not enough: the constants are patched
too (as huggingface_hub's own tests do), or runs would write into the user's real cache.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest_plugins = ["tests.registry_server_fixture", "tests._dist_fixtures"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    from huggingface_hub import constants

    hf_home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("ATLAS_ALIGN_CACHE", str(tmp_path / "atlas_cache"))
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(hf_home / "assets"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(hf_home / "xet"), raising=False)
    torch.manual_seed(0)
    yield


def test_cache_is_isolated(tmp_path):
    """A download in a test lands under the test's tmp folder, never in the user's cache."""
    from huggingface_hub import constants

    assert constants.HF_HUB_CACHE.startswith(str(tmp_path))
