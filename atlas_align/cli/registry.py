"""`atlas-align registry serve / token / gc / fsck / backup / restore / versions / ls`: a Hub-compatible
registry server, its operator commands and its queries."""

from __future__ import annotations

import sys

import click

from atlas_align.cli.main import endpoint_option, friendly_errors, token_option


@click.group()
def registry() -> None:
    """Run and query a Hub-compatible registry server (for air-gapped labs and CI)."""


@registry.command("serve")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="Folder holding the registry's database and blobs.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--lfs-threshold", type=int, default=None, help="Files of at least this many bytes go through LFS (clients need HF_HUB_DISABLE_XET=1); default: all inline.")
@friendly_errors
def registry_serve(root, host, port, lfs_threshold):
    """Serve the Hub HTTP API subset the huggingface_hub client uses.

    \b
    Example:
      atlas-align registry serve --root ./registry --port 8000
      export HF_ENDPOINT=http://127.0.0.1:8000 HF_HUB_DISABLE_XET=1
    """
    from atlas_align.registry.server import serve

    serve(root, host=host, port=port, lfs_threshold=lfs_threshold)


@registry.group("token")
def registry_token() -> None:
    """Manage access tokens of a registry server."""


@registry_token.command("create")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="The registry's folder.")
@click.option("--user", required=True, help="User (namespace) the token writes to.")
@click.option("--read-only", is_flag=True, help="A token that can only read (private repos of that user).")
@click.option("--expires-in", "expires_in", type=click.FloatRange(min=1), default=None, help="Seconds until the token stops working (default: never).")
@friendly_errors
def registry_token_create(root, user, read_only, expires_in):
    """Create a token and print it once (only its hash is stored).

    \b
    Example:
      export HF_TOKEN=$(atlas-align registry token create --root ./registry --user my-org --expires-in 86400)
    """
    from atlas_align.registry.server import create_token

    click.echo(create_token(root, user, write=not read_only, expires_in_s=expires_in))


@registry_token.command("list")
@click.option("--root", type=click.Path(file_okay=False, exists=True), required=True, help="The registry's folder.")
@friendly_errors
def registry_token_list(root):
    """List tokens (an id, the user, rights and dates; never the secret).

    \b
    Example:
      atlas-align registry token list --root ./registry
    """
    from atlas_align.registry.server.store import RegistryStore

    for token in RegistryStore(root).list_tokens():
        expires = token["expires_at"] or "never"
        click.echo(f"{token['id']}  {token['user']:<20} {'write' if token['write'] else 'read':<5}  created {token['created_at']}  expires {expires}")


@registry_token.command("revoke")
@click.argument("token_or_id")
@click.option("--root", type=click.Path(file_okay=False, exists=True), required=True, help="The registry's folder.")
@friendly_errors
def registry_token_revoke(token_or_id, root):
    """Revoke a token, given the token itself or the id `token list` shows.

    \b
    Example:
      atlas-align registry token revoke 3fa2b1c09d8e --root ./registry
    """
    from atlas_align.errors import ArtifactNotFound
    from atlas_align.registry.server.store import RegistryStore

    if not RegistryStore(root).revoke_token(token_or_id):
        raise ArtifactNotFound(f"No token {token_or_id!r} in {root}; `atlas-align registry token list --root {root}` shows the ids.")
    click.echo(f"revoked {token_or_id[:12]}")


def _existing_registry(root: str) -> None:
    from pathlib import Path

    from atlas_align.errors import ConfigError
    from atlas_align.registry.server.store import DB_FILENAME

    if not (Path(root) / DB_FILENAME).is_file():
        raise ConfigError(f"{root} holds no registry ({DB_FILENAME} is missing); check --root.")


@registry.command("gc")
@click.option("--root", type=click.Path(file_okay=False, exists=True), required=True, help="The registry's folder.")
@click.option("--dry-run", is_flag=True, help="Only report what would be freed.")
@click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=24 * 3600.0, show_default=True,
              help="Seconds: blobs uploaded (or re-used) more recently, and younger unreachable commits, are kept, so uploads waiting for their commit survive.")
@click.option("-v", "--verbose", is_flag=True, help="Also list every freed blob's sha256.")
@friendly_errors
def registry_gc(root, dry_run, grace_s, verbose):
    """Free blobs no branch, tag or retained commit needs (safe while the server runs).

    Retained: every commit reachable from a branch or tag (whole histories) and anything younger
    than --grace. Commits of deleted branches are pruned, objects of deleted repos freed.

    \b
    Example:
      atlas-align registry gc --root ./registry --dry-run
      atlas-align registry gc --root ./registry
    """
    from atlas_align.registry.server.maintenance import collect_garbage

    _existing_registry(root)
    report = collect_garbage(root, grace_s=grace_s, dry_run=dry_run)
    if verbose:
        for sha256 in report.freed:
            click.echo(f"{'would free' if dry_run else 'freed'} {sha256}")
    click.echo(report.summary())


@registry.command("fsck")
@click.option("--root", type=click.Path(file_okay=False, exists=True), required=True, help="The registry's folder.")
@friendly_errors
def registry_fsck(root):
    """Re-hash every blob; report corrupt and missing ones (exit code 1 if any).

    Corrupt blobs are moved to ROOT/quarantine/: the server then answers an error for them
    (409 CorruptObject), never wrong bytes; re-upload the file to repair. Safe while serving.

    \b
    Example:
      atlas-align registry fsck --root ./registry
    """
    from atlas_align.registry.server.maintenance import fsck

    _existing_registry(root)
    report = fsck(root)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)


@registry.command("backup")
@click.option("--root", type=click.Path(file_okay=False, exists=True), required=True, help="The registry's folder.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Backup folder (new, or an earlier backup to refresh).")
@friendly_errors
def registry_backup(root, out):
    """Consistent backup while serving: the database (SQLite online backup), then its blobs.

    A repeated backup into the same folder copies only new blobs. Exit code 1 if blobs the
    database needs were missing or corrupt in the source.

    \b
    Example:
      atlas-align registry backup --root ./registry --out /backups/registry-2025-01-01
      atlas-align registry restore --backup /backups/registry-2025-01-01 --root ./registry-restored
    """
    from atlas_align.registry.server.maintenance import backup

    _existing_registry(root)
    report = backup(root, out)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)


@registry.command("restore")
@click.option("--backup", "backup_dir", type=click.Path(file_okay=False, exists=True), required=True, help="A folder written by `registry backup`.")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="New registry folder (must be empty or absent).")
@friendly_errors
def registry_restore(backup_dir, root):
    """Check a backup (database integrity, every blob re-hashed) and copy it into a new registry folder.

    \b
    Example:
      atlas-align registry restore --backup /backups/registry-2025-01-01 --root ./registry-restored
      atlas-align registry serve --root ./registry-restored
    """
    from atlas_align.registry.server.maintenance import restore

    report = restore(backup_dir, root)
    click.echo(f"restore: {report.blobs_copied} blob(s) ({report.bytes_copied} bytes) and the database into {root}; "
               f"start it with `atlas-align registry serve --root {root}`")


@registry.command("versions")
@click.argument("repo_id")
@endpoint_option
@token_option
@friendly_errors
def registry_versions(repo_id, endpoint, token):
    """List the tags, branches and commits of an alignment repo.

    \b
    Example:
      atlas-align registry versions my-org/smollm2-l20-atlas
    """
    from atlas_align.registry.hub import list_versions, make_api

    versions = list_versions(make_api(endpoint, token), repo_id)
    for kind in ("tags", "branches"):
        for ref in versions[kind]:
            click.echo(f"{ {'tags': 'tag', 'branches': 'branch'}[kind]:<7} {ref['name']:<20} {ref['commit'][:12]}")
    for commit in versions["commits"]:
        click.echo(f"commit  {commit['commit'][:12]}  {commit['date'] or '':<26} {commit['title']}")


@registry.command("ls")
@click.option("--search", default=None, help="Substring of the repo id.")
@click.option("--author", default=None, help="Namespace.")
@endpoint_option
@token_option
@friendly_errors
def registry_ls(search, author, endpoint, token):
    """List alignment repos (tag atlas-alignment) in a registry.

    \b
    Example:
      atlas-align registry ls --author my-org
    """
    from atlas_align.registry.hub import list_alignments, make_api

    for repo in list_alignments(make_api(endpoint, token), search=search, author=author):
        click.echo(f"{repo['id']:<50} {(repo['sha'] or '')[:12]}")
