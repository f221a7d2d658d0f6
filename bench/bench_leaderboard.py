"""The nightly leaderboard job with a warm verification cache: `ci/leaderboard.sh`, cold then warm.

Run:  python bench/bench_leaderboard.py [--quick] [--repos N]

What it does:
  1. Fits one alignment of a tiny random-init Llama onto a tiny BERT's raw layer (built offline
     from configs) and pushes it to N repos of a real registry server (tests/registry_server_fixture,
     as the integration tests run it), each its own commit: the board's shape (the published board
     has 100 rows) without minutes of real-model fitting.
  2. Runs `bash ci/leaderboard.sh` exactly as CI does (HF_ENDPOINT = the server, verification on):
       cold  — empty verification cache: every row is re-evaluated;
       warm  — the same registry, no new commits: every row's commit sha is in the cache.
  3. A third run after ONE new commit: only that row is re-verified.
Prints the three wall times, the rows verified in each (from the job's own output) and the
ratio cold / warm. Goal: warm < 60 s at the published board's size (100 repos; --quick: 10).
The warm run's cost is listing + one small download per repo and rendering; it does not
depend on what verifying a row costs (on the real board, minutes of model forward passes per row).
Nothing is written to bench/RESULTS.md by the script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, header


def build_artifact(root: Path) -> Path:
    from atlas_align.alignment.pipeline import AlignRequest, run_alignment
    from atlas_align.corpus.sources import CorpusConfig
    from tests.tiny_models import write_tiny_pair

    subject, atlas, corpus = write_tiny_pair(root)
    req = AlignRequest(subject=str(subject), layer=1, atlas=f"model:{atlas}@1", corpus=CorpusConfig(source=str(corpus), heldout_fraction=0.2), samples=400, heldout_samples=0)
    folder = root / "artifact"
    run_alignment(req, progress=False).alignment.save_pretrained(folder)
    return folder


def run_job(server, out: Path, cache: Path, home: Path) -> tuple[float, str]:
    env = server.client_env(home, server.token) | {
        "HF_ENDPOINT": server.endpoint, "LEADERBOARD_DIR": str(out), "LEADERBOARD_CACHE": str(cache), "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
    }  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(["bash", str(REPO / "ci" / "leaderboard.sh")], cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ci/leaderboard.sh failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout + done.stderr


def verified_count(out: Path) -> int:
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    return sum(1 for r in rows if r.get("status") in ("verified", "corrected"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 repos (CI smoke run)")
    parser.add_argument("--repos", type=int, default=None, help="repos on the registry (default 100, --quick 10)")
    args = parser.parse_args()
    n = args.repos or (10 if args.quick else 100)
    header(f"ci/leaderboard.sh cold vs warm verification cache, {n} repos")
    os.environ.update(HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")

    from atlas_align.registry.hub import push_folder
    from tests.registry_server_fixture import start_registry_server, stop_registry_server

    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as tmp:
        root = Path(tmp)
        folder = build_artifact(root)
        server = start_registry_server(root / "registry", lfs_threshold=None)
        try:
            api = server.api()
            t0 = time.perf_counter()
            for i in range(n):
                push_folder(api, folder, f"{server.user}/tiny-{i:03d}", tag="v1")
            print(f"pushed {n} repos in {time.perf_counter() - t0:.1f}s")
            out, cache, home = root / "board", root / "lb-cache", root / "home"
            cold, _ = run_job(server, out, cache, home)
            cold_rows = verified_count(out)
            warm, log = run_job(server, out, cache, home)
            unchanged = "leaderboard unchanged" in log or "no change" in log.lower()
            api.upload_file(path_or_fileobj=b"# touched\n", path_in_repo="NOTES.md", repo_id=f"{server.user}/tiny-000")
            one_new, _ = run_job(server, out, cache, home)
        finally:
            stop_registry_server(server)
    print("| run | wall s | rows verified on the board |")
    print("|---|---:|---:|")
    print(f"| cold (empty verification cache) | {cold:.1f} | {cold_rows} |")
    print(f"| warm (no new commits) | {warm:.1f} | {cold_rows} |")
    print(f"| one new commit | {one_new:.1f} | {cold_rows} |")
    print(f"cold / warm = {cold / warm:.1f}×; the diff reported no change on the warm run: {unchanged}")
    goal = 60.0
    print(f"# goal warm run < {goal:.0f} s at {n} repos: {'MET' if warm < goal else 'NOT MET'} ({warm:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
