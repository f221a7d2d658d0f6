"""The only module that talks to a Hub (huggingface.co or our registry server)."""

from __future__ import annotations

from pathlib import Path

from atlas_align.errors import ArtifactNotFound
from atlas_align.registry.artifact import CONFIG_FILENAME, LABELS_FILENAME, WEIGHTS_FILENAME


def download_artifact_files(repo_id: str, *, revision: str | None = None, cache_dir: str | None = None, token: str | bool | None = None, force_download: bool = False, local_files_only: bool = False, **_: object) -> dict[str, Path]:
    """Fetch an alignment's files at one revision; raise ArtifactNotFound with the reason if absent."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    files: dict[str, Path] = {}
    for name in (CONFIG_FILENAME, WEIGHTS_FILENAME, LABELS_FILENAME):
        try:
            files[name] = Path(
                hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir, token=token, force_download=force_download, local_files_only=local_files_only)
            )
        except RepositoryNotFoundError:
            raise ArtifactNotFound(f"Repository {repo_id!r} does not exist or needs a token (set HF_TOKEN).") from None
        except RevisionNotFoundError:
            raise ArtifactNotFound(f"Repository {repo_id!r} has no revision {revision!r}; `atlas-align registry versions {repo_id}` lists them.") from None
        except EntryNotFoundError:
            if name == LABELS_FILENAME:
                continue
            raise ArtifactNotFound(f"{repo_id}@{revision or 'main'} has no {name}: it is not an atlas-align alignment.") from None
        except HfHubHTTPError as exc:
            raise ArtifactNotFound(f"Could not download {name} from {repo_id}@{revision or 'main'}: {exc}") from None
    return files


def make_api(endpoint: str | None = None, token: str | None = None):
    """An HfApi for huggingface.co or a registry server (``endpoint`` / ``HF_ENDPOINT``)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def push_folder(api, folder: str | Path, repo_id: str, *, tag: str | None = None, private: bool = False, commit_message: str | None = None) -> dict:
    """Upload an artifact folder as one Hub commit (optionally tagged); returns {commit, url, tag}."""
    from huggingface_hub.errors import HfHubHTTPError

    from atlas_align.errors import AuthError
    from atlas_align.registry.artifact import read_config

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


def download_atlas(repo_id: str, revision: str | None = None) -> Path:
    """Fetch an atlas repo (sae/ + atlas.json + labels) at one revision into the HF cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except RepositoryNotFoundError:
        raise ArtifactNotFound(f"Atlas repository {repo_id!r} does not exist or needs a token (set HF_TOKEN).") from None
    except RevisionNotFoundError:
        raise ArtifactNotFound(f"Atlas repository {repo_id!r} has no revision {revision!r}.") from None
    except LocalEntryNotFoundError:
        raise ArtifactNotFound(f"Atlas {repo_id!r} is not in the local cache and the Hub is unreachable (offline?). Use 'builtin' or a local folder.") from None
    except HfHubHTTPError as exc:
        raise ArtifactNotFound(f"Could not download atlas {repo_id!r}: {exc}") from None
