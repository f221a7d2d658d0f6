"""Publishing to and listing a Hub (huggingface.co or our registry server); downloads live in ``atlas_align.downloads``."""

from __future__ import annotations

from pathlib import Path

from atlas_align.errors import ArtifactNotFound
from atlas_align.files import CONFIG_FILENAME


def make_api(endpoint: str | None = None, token: str | None = None):
    """An HfApi for huggingface.co or a registry server (``endpoint`` / ``HF_ENDPOINT``)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def push_folder(api, folder: str | Path, repo_id: str, *, tag: str | None = None, private: bool = False, commit_message: str | None = None) -> dict:
    """Upload an artifact folder as one Hub commit (optionally tagged); returns {commit, url, tag}."""
    from huggingface_hub.errors import HfHubHTTPError

    from atlas_align.alignment.artifact import read_config
    from atlas_align.errors import AuthError

    folder = Path(folder)
    config = read_config(folder / CONFIG_FILENAME)  # refuse to publish something that is not an artifact
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message or f"atlas-align: {config.method} alignment of {config.subject.model_id}",
            ignore_patterns=["*.tmp", ".cache/*"],
        )
        if tag:
            api.create_tag(repo_id, tag=tag, revision=info.oid)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            raise AuthError(f"The registry refused the push to {repo_id!r} ({status}): set HF_TOKEN to a token with write access.") from None
        raise
    return {"commit": info.oid, "url": info.commit_url, "tag": tag}


def list_versions(api, repo_id: str) -> dict:
    """Tags, branches and commits of a repo, newest commit first."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = api.list_repo_refs(repo_id)
        commits = api.list_repo_commits(repo_id)
    except RepositoryNotFoundError:
        raise ArtifactNotFound(f"Repository {repo_id!r} does not exist (or is private: set HF_TOKEN).") from None
    return {
        "tags": [{"name": t.name, "commit": t.target_commit} for t in refs.tags],
        "branches": [{"name": b.name, "commit": b.target_commit} for b in refs.branches],
        "commits": [{"commit": c.commit_id, "title": c.title, "date": c.created_at.isoformat() if c.created_at else None} for c in commits],
    }


def list_alignments(api, *, search: str | None = None, author: str | None = None) -> list[dict]:
    """Alignment repos in a registry (tag ``atlas-alignment``)."""
    models = api.list_models(filter="atlas-alignment", search=search, author=author)
    return [{"id": m.id, "sha": getattr(m, "sha", None), "tags": list(m.tags or [])} for m in models]
