"""Registry server under load: N concurrent real clients at 20 repos and at many repos.

Run:  python bench/bench_registry.py [--quick] [--clients N] [--seconds S] [--repos-large K] [--rounds R]

What it does, per scale (20 repos, then K repos: 1,000 in the full run, 200 with --quick):
  1. Creates the repos *directly through the store API* (RegistryStore.create_repo + one commit of
     a README card tagged atlas-alignment and a config.json each), before any server runs, in a RAM
     folder (/dev/shm) that is then copied to disk: through HTTP, or on this box's disk (~20 ms
     fsync per transaction), 1,000 repos would take minutes and measure nothing the load phase
     does not. Creation time is printed. The server then runs on the disk copy.
  2. Starts `atlas_align.registry.server.serve` in its own process (tests/registry_server_fixture's
     start_registry_server, the way the integration tests do).
Both servers stay up; then, round-robin over the scales (R rounds, so drift on a shared box hits
both alike), N threads each with its own `huggingface_hub.HfApi` run for S seconds, cycling
  download      hf_hub_download(config.json of a random repo, force_download=True): HEAD + 307 + GET
  list_models   list(api.list_models(filter="atlas-alignment", limit=20)): the leaderboard's first page
  download      (again: reads dominate a registry)
  commit        api.upload_file(1 KiB to a random repo): preupload + NDJSON commit
Random repos are drawn from all repos of the scale, so caches help the large scale no more than
they must. Reported per scale, from the round with the most operations (the least-disturbed one):
ops/s per operation and in total, p50/p99 latency; and the slowdown large vs 20 repos (total
ops/s at 20 / total ops/s at K; goal ≤ 2×). Nothing is written to bench/RESULTS.md by the script.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_OFFLINE"] = "0"

from atlas_align.registry.server.store import AddFile, RegistryStore  # noqa: E402
from tests.registry_server_fixture import (  # noqa: E402
    SERVER_USER,
    RegistryServer,
    start_registry_server,
    stop_registry_server,
)

GOAL = 2.0
OPS = ("download", "list_models", "download", "commit")
CARD = b"---\nlibrary_name: atlas-align\ntags:\n- atlas-alignment\n---\n# bench repo\n\nA repo of the registry benchmark.\n"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import huggingface_hub

    return (f"{cpu}, {os.cpu_count()} cores (load average {load:.1f} at start), Python {platform.python_version()}, "
            f"huggingface_hub {huggingface_hub.__version__}")


def git_sha() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def ram_dir() -> str | None:
    """/dev/shm when there is one (client caches and repo creation go there), else the default."""
    ram = Path("/dev/shm")
    return str(ram) if ram.is_dir() and os.access(ram, os.W_OK) else None


def populate(root: Path, n: int) -> tuple[list[str], float]:
    """``n`` repos of ``SERVER_USER`` with a card and a config, written through the store API.

    Built in a RAM folder (/dev/shm) when there is one, then copied to ``root`` on disk, where the
    server runs: on this box's disk every SQLite transaction waits ~20 ms for fsync, which would
    spend over a minute of the time budget on creating 1,000 repos and tell nothing about serving.
    """
    started = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix="bench-registry-", dir=ram_dir()))
    try:
        store = RegistryStore(stage / "root")
        ids = []
        for i in range(n):
            name = f"bench-{i:04d}"
            repo = store.create_repo("model", SERVER_USER, name, private=False, author=SERVER_USER)
            config = f'{{"repo": "{name}", "dim": 576, "layer": {i % 30}}}\n'.encode()
            ops = [AddFile("README.md", store.put_bytes(CARD, repo)),
                   AddFile("config.json", store.put_bytes(config, repo))]
            store.commit(repo, "main", ops, title="add card and config", author=SERVER_USER)
            ids.append(f"{SERVER_USER}/{name}")
        del store
        shutil.copytree(stage / "root", root)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ids, time.perf_counter() - started


def client_loop(server: RegistryServer, ids: list[str], deadline: float, start_at: int, seed: int,
                cache: Path, out: dict[str, list[float]], errors: list[str]) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=server.endpoint, token=server.token)
    rng = random.Random(seed)
    step = start_at
    while time.monotonic() < deadline:
        op = OPS[step % len(OPS)]
        step += 1
        repo_id = rng.choice(ids)
        began = time.perf_counter()
        try:
            if op == "download":
                hf_hub_download(repo_id, "config.json", endpoint=server.endpoint, token=server.token,
                                cache_dir=cache, force_download=True)
            elif op == "list_models":
                models = list(api.list_models(filter="atlas-alignment", limit=20))
                assert len(models) == 20, len(models)
            else:
                api.upload_file(path_or_fileobj=rng.randbytes(1024), path_in_repo=f"runs/{seed}-{step}.bin",
                                repo_id=repo_id, commit_message=f"bench commit {seed}-{step}")
        except Exception as exc:  # noqa: BLE001 - counted and shown; a healthy server has none
            errors.append(f"{op}: {exc!r}"[:300])
            continue
        out[op].append(time.perf_counter() - began)


def load_round(server: RegistryServer, ids: list[str], clients: int, seconds: float, work: Path, tag: str) -> dict:
    deadline = time.monotonic() + seconds
    per_thread: list[dict[str, list[float]]] = [defaultdict(list) for _ in range(clients)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=client_loop, args=(server, ids, deadline, i, zlib.crc32(f"{tag}-{i}".encode()),
                                                   work / f"cache-{tag}-{i}", per_thread[i], errors))
        for i in range(clients)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged: dict[str, list[float]] = defaultdict(list)
    for stats in per_thread:
        for op, values in stats.items():
            merged[op].extend(values)
    return {"elapsed": elapsed, "latencies": merged, "errors": errors}


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def total_rate(result: dict) -> float:
    return sum(len(v) for v in result["latencies"].values()) / result["elapsed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 repos, 4 clients, 5 s, 1 round (well under a minute)")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="length of one load round per scale")
    parser.add_argument("--repos-large", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    clients = args.clients or (4 if args.quick else 8)
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    large = args.repos_large or (200 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 2)
    scales = (20, large)
    started = time.perf_counter()

    print("# registry load: N concurrent huggingface_hub clients against `registry serve` in its own process")
    print(f"# machine: {machine()}")
    print(f"# atlas-align git {git_sha()}; command: python {' '.join(sys.argv)}")
    print(f"# {clients} clients, {seconds:g} s per round, {rounds} round(s) per scale, ops cycle {'/'.join(OPS)}")

    # The servers' roots on disk (what is measured); the clients' caches in RAM, so their files
    # neither compete for this box's slow disk nor take a minute to delete afterwards.
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    caches = Path(tempfile.mkdtemp(prefix="bench-registry-clients-", dir=ram_dir()))
    servers: dict[int, RegistryServer] = {}
    ids: dict[int, list[str]] = {}
    try:
        for n in scales:
            ids[n], took = populate(work / f"root-{n}", n)
            print(f"# created {n} repos through the store API in {took:.1f} s ({n / took:.0f} repos/s)")
            servers[n] = start_registry_server(work / f"root-{n}")
        results: dict[int, list[dict]] = {n: [] for n in scales}
        for r in range(rounds):
            for n in scales:  # round-robin, so drift on a shared box hits both scales alike
                results[n].append(load_round(servers[n], ids[n], clients, seconds, caches, f"{n}-{r}"))
                print(f"#   round {r + 1} at {n:>4} repos: {total_rate(results[n][-1]):6.1f} ops/s, "
                      f"{len(results[n][-1]['errors'])} errors", flush=True)
        logs = {n: servers[n].log() for n in scales}
    finally:
        for server in servers.values():
            stop_registry_server(server)
        shutil.rmtree(caches, ignore_errors=True)
    try:
        report(results, logs, scales)
    finally:
        print(f"# wall time {time.perf_counter() - started:.0f} s", flush=True)
        # Thousands of small files on a slow shared disk take a while to delete: not our wait.
        subprocess.Popen(["rm", "-rf", str(work)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report(results: dict[int, list[dict]], logs: dict[int, str], scales: tuple[int, int]) -> None:
    best = {n: max(results[n], key=total_rate) for n in scales}
    small, big = scales
    header = (f"| operation   | {small} repos ops/s | p50 ms | p99 ms | {big} repos ops/s | p50 ms | p99 ms "
              f"| p50 {big}/{small} |")
    print()
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for op in dict.fromkeys(OPS):
        cells = []
        for n in scales:
            lat = best[n]["latencies"].get(op, [])
            cells.append(f"{len(lat) / best[n]['elapsed']:>{len(str(n)) + 12}.1f} | {quantile(lat, 0.5) * 1e3:6.0f} | "
                         f"{quantile(lat, 0.99) * 1e3:6.0f}")
        ratio = quantile(best[big]["latencies"].get(op, []), 0.5) / quantile(best[small]["latencies"].get(op, []), 0.5)
        print(f"| {op:<11} | {cells[0]} | {cells[1]} | {ratio:>{len(str(big)) + len(str(small)) + 5}.2f}x |")
    rates = {n: total_rate(best[n]) for n in scales}
    medians = {n: statistics.median(total_rate(x) for x in results[n]) for n in scales}
    print(f"| total       | {rates[small]:>{len(str(small)) + 12}.1f} |        |        | "
          f"{rates[big]:>{len(str(big)) + 12}.1f} |        |        |")
    slowdown = rates[small] / rates[big]
    median_slowdown = medians[small] / medians[big]
    errors = {n: sum(len(x["errors"]) for x in results[n]) for n in scales}
    print()
    print(f"slowdown {big} vs {small} repos (total ops/s, best round): {slowdown:.2f}x "
          f"(median of rounds: {median_slowdown:.2f}x); goal <= {GOAL:g}x: {'met' if slowdown <= GOAL else 'NOT met'}")
    print(f"errors: {errors[small]} at {small} repos, {errors[big]} at {big} repos"
          + "".join(f"\n  {e}" for n in scales for x in results[n] for e in x["errors"][:3]))
    tracebacks = {n: logs[n].count("Traceback") for n in scales}
    print(f"server tracebacks in the logs: {tracebacks[small]} at {small} repos, {tracebacks[big]} at {big} repos")


if __name__ == "__main__":
    main()
