"""Pytest fixture that runs the real registry server in its own process.

Why a separate process: the server must be exercised exactly as labs run it, and the client side
(``huggingface_hub``) reads ``HF_ENDPOINT`` and friends once, at import time, so client code that
relies on ``constants.ENDPOINT`` runs in fresh subprocesses through :meth:`RegistryServer.run_client`.

Use it with ``pytest_plugins = ["tests.registry_server_fixture"]`` in a conftest, or import
``registry_server`` (and ``hub_online``) into a test module. In-process client calls must pass
``endpoint=`` (``registry_server.api()`` does) and need ``hub_online`` when the session runs with
``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_USER = "atlas-lab"
# Files of at least this size go through LFS, like on the Hub; smaller ones are inlined.
FIXTURE_LFS_THRESHOLD = 10 * 1024 * 1024
_STARTUP_TIMEOUT_S = 30.0
_UNSET: Any = object()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RegistryServer:
    """A running registry: ``endpoint`` for clients, ``token`` (write, user ``user``), ``root`` on disk."""

    endpoint: str
    token: str
    root: Path
    user: str
    process: subprocess.Popen
    log_path: Path

    def api(self, token: str | bool | None = _UNSET) -> Any:
        """``HfApi`` pointed at this server; ``token=False`` for an anonymous client."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token if token is _UNSET else token)

    def make_token(self, user: str, write: bool = True) -> str:
        from atlas_align.registry.server.store import create_token

        return create_token(self.root, user, write=write)

    def client_env(self, hf_home: Path, token: str | None = None, **extra: str) -> dict[str, str]:
        """Environment for a fresh client process: endpoint, isolated cache, no Xet, no telemetry."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_IMPLICIT_TOKEN="1" if token is None else "0",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        )
        if token is not None:
            env["HF_TOKEN"] = token
        env.update(extra)
        return env

    def run_client(self, code: str, hf_home: Path, token: str | None = None, timeout: float = 120, **env: str) -> Any:
        """Run ``code`` in a fresh interpreter configured for this server; returns the JSON it
        prints on its last stdout line. Raises with the child's stderr on failure."""
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=self.client_env(hf_home, token, **env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"client process failed ({result.returncode}):\n{result.stderr[-4000:]}")
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_registry_server(root: Path, lfs_threshold: int | None = FIXTURE_LFS_THRESHOLD) -> RegistryServer:
    """Start the registry server (``atlas_align.registry.server.serve``) in its own process on a free
    port and wait until it answers."""
    root.mkdir(parents=True, exist_ok=True)
    from atlas_align.registry.server.store import create_token

    token = create_token(root, SERVER_USER, write=True)
    port = free_port()
    log_path = root.parent / f"{root.name}-server.log"
    # The server has one entry point, ``serve`` (what ``atlas-align registry serve`` calls).
    code = (
        "import sys; from atlas_align.registry.server import serve; "
        "serve(sys.argv[1], port=int(sys.argv[2]), lfs_threshold=None if sys.argv[3] == 'none' else int(sys.argv[3]), "
        "log_level='warning')"
    )
    cmd = [sys.executable, "-c", code, str(root), str(port), "none" if lfs_threshold is None else str(lfs_threshold)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    server = RegistryServer(endpoint=endpoint, token=token, root=root, user=SERVER_USER, process=process,
                            log_path=log_path)
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"registry server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{endpoint}/api/models?limit=1", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            stop_registry_server(server)
            raise RuntimeError(f"registry server did not answer within {_STARTUP_TIMEOUT_S}s:\n{server.log()}")
        time.sleep(0.1)


def stop_registry_server(server: RegistryServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A real registry server for the whole test session (write token for user ``atlas-lab``)."""
    server = start_registry_server(tmp_path_factory.mktemp("registry") / "root")
    try:
        yield server
    finally:
        stop_registry_server(server)


@pytest.fixture
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift ``HF_HUB_OFFLINE`` for one test so in-process clients can reach the local registry.

    The client reads the offline flag at call time from ``huggingface_hub.constants`` (the
    documented way to toggle it after import). Telemetry stays off, so the only host contacted is
    the ``endpoint=`` each call names.
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
