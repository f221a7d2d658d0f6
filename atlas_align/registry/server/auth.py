"""Who is calling and what they may do: bearer tokens, namespace write rights, private repos,
and the HMAC signatures that stand in for a token on LFS upload URLs (the client sends those
without ``Authorization``).

Tokens are stored hashed in the registry database (see :mod:`.store`); a token may carry an
expiry. Private repos of others look exactly like missing ones (404 ``RepoNotFound``), and so do
signed URLs for them: an upload URL is checked for its signature before anything is looked up.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.datastructures import Headers

from atlas_align.errors import AuthError
from atlas_align.registry.server.protocol import TOKEN_HELP, HubError
from atlas_align.registry.server.store import RegistryStore, Repo, RepoNotFound, TokenInfo, create_token

__all__ = ["Auth", "TokenInfo", "authenticate", "create_token"]

_MAX_TOKEN_CHARS = 512


def authenticate(store: RegistryStore, token: str | None) -> TokenInfo | None:
    """``None`` for anonymous callers; :class:`AuthError` for a token this registry never issued,
    revoked, or that expired."""
    if token is None:
        return None
    info = store.lookup_token(token) if len(token) <= _MAX_TOKEN_CHARS else None
    if info is None:
        raise AuthError("Invalid credentials in Authorization header")
    return info


class Auth:
    """Permission checks over one store, plus the key that signs LFS upload URLs."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._signing_key = store.signing_key()

    def caller(self, headers: Headers) -> TokenInfo | None:
        header = headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Invalid credentials in Authorization header")
        return authenticate(self.store, token.strip())

    @staticmethod
    def require_write(caller: TokenInfo | None, namespace: str | None = None) -> TokenInfo:
        if caller is None:
            raise HubError(
                401,
                f"Authentication required: this operation needs a write token. Pass token=... to HfApi or set "
                f"HF_TOKEN ({TOKEN_HELP}).",
                "Unauthorized",
            )
        if not caller.write:
            raise HubError(403, f"The token of user {caller.user!r} is read-only; use a write token.")
        if namespace is not None and caller.user != namespace:
            raise HubError(
                403, f"User {caller.user!r} cannot write to namespace {namespace[:100]!r}; use a token of that "
                "namespace."
            )
        return caller

    @staticmethod
    def can_read(caller: TokenInfo | None, repo: Repo) -> bool:
        return not repo.private or (caller is not None and caller.user == repo.namespace)

    def repo(self, caller: TokenInfo | None, repo_type: str, ns: str, name: str, *, write: bool = False) -> Repo:
        """The repo if the caller may see it; private repos of others look missing, as on the Hub."""
        try:
            repo = self.store.get_repo(repo_type, ns, name)
        except RepoNotFound:
            repo = None
        if repo is None or not self.can_read(caller, repo):
            raise HubError(
                404,
                f"Repository {ns[:100]}/{name[:100]} ({repo_type}) not found. Check the repo id and repo_type; if "
                "it is private, pass a token of its owner.",
                "RepoNotFound",
            )
        if write:
            self.require_write(caller, repo.namespace)
        return repo

    def opaque_id(self, repo: Repo) -> str:
        """The ``_id`` the API shows: stable per repo, but not a counter that reveals how many
        (private) repos exist or were created in between."""
        return hmac.new(self._signing_key, f"repo:{repo.id}".encode(), hashlib.sha256).hexdigest()[:24]

    # -- signed LFS URLs ---------------------------------------------------------------------
    def sign(self, repo_type: str, repo_id: str, oid: str, size: int, expires: int) -> str:
        message = f"{repo_type}:{repo_id.lower()}:{oid}:{size}:{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def check_signature(self, repo_type: str, repo_id: str, oid: str, size: int, expires: int, sig: str) -> None:
        """403 for any URL this registry did not sign or that expired — checked before the repo is
        looked up, so the answer says nothing about which repos exist."""
        expected = self.sign(repo_type, repo_id, oid, size, expires)
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")) or expires < time.time():
            raise HubError(403, "Upload URL signature is invalid or expired; request a new one (LFS batch).")
