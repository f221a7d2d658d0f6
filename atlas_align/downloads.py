"""Every download from a Hub (huggingface.co or our registry server), with errors that say what to do.

Bottom layer: atlases (stage ``atlas``), alignments (``alignment``) and the evaluation runner all
fetch through here; publishing and listing live in ``atlas_align.registry.hub``.
"""

from __future__ import annotations

from pathlib import Path

from atlas_align.errors import ArtifactNotFound
from atlas_align.files import CONFIG_FILENAME, LABELS_FILENAME, WEIGHTS_FILENAME


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
