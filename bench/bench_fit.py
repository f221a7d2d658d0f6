"""Streaming fit (AlignmentStatistics + procrustes) vs naive (materialise all rows + scipy): time and peak memory.

Run:  python bench/bench_fit.py [--quick]

Synthetic paired rows: atlas c ~ N(0, I_dc), subject s = c·Q + 0.5·noise (Q a random d_c×d_s
matrix), produced in float32 chunks the way the extractor yields them; both paths see identical
rows. Each (path, N) case runs in a fresh subprocess; peak memory is that process's RSS
high-water mark (getrusage ru_maxrss) minus its RSS after imports and warm-up, so torch's and
numpy's allocations both count (tracemalloc would miss torch's CPU allocator).
  streaming - AlignmentStatistics.update per chunk, then get_method("procrustes").fit(stats)
  naive     - concatenate all rows, float64, row-normalise, centre (procrustes' default
              center=True), scipy.linalg.orthogonal_procrustes (square d) or the SVD of the
              materialised cross-product Ŝᵀ Ĉ (d_s != d_c)
Goal: streaming peak memory flat in N; both give the same T to 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

HERE = Path(__file__).resolve().parent


def chunks(n: int, d_s: int, d_c: int, chunk: int, seed: int = 0):
    mixing = torch.randn(d_c, d_s, generator=torch.Generator().manual_seed(seed)) / d_c**0.5
    for k, start in enumerate(range(0, n, chunk)):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k + 1)
        rows = min(chunk, n - start)
        c = torch.randn(rows, d_c, generator=gen)
        s = c @ mixing + 0.5 * torch.randn(rows, d_s, generator=gen)
        yield s, c


def run_case(path: str, n: int, d_s: int, d_c: int, chunk: int, out: str, repeats: int) -> dict:
    sys.path.insert(0, str(HERE.parent))
    from scipy.linalg import orthogonal_procrustes

    from atlas_align.fit.methods import get_method
    from atlas_align.fit.statistics import AlignmentStatistics

    # Warm up both code paths on tiny inputs so lazily loaded BLAS/LAPACK code is in the baseline.
    warm = AlignmentStatistics(d_s, d_c)
    for s, c in chunks(2 * max(d_s, d_c), d_s, d_c, 64):  # enough samples for a determined fit
        warm.update(s, c)
    get_method("procrustes").fit(warm)
    orthogonal_procrustes(np.eye(4), np.eye(4))
    np.linalg.svd(np.eye(4))
    baseline = psutil.Process().memory_info().rss

    def fit_once():
        if path == "streaming":
            stats = AlignmentStatistics(d_s, d_c)
            for s, c in chunks(n, d_s, d_c, chunk):
                stats.update(s, c)
            return get_method("procrustes").fit(stats).T_.numpy()
        parts = list(chunks(n, d_s, d_c, chunk))
        S = np.concatenate([s.numpy() for s, _ in parts]).astype(np.float64)
        C = np.concatenate([c.numpy() for _, c in parts]).astype(np.float64)
        del parts
        S /= np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-12)
        C /= np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-12)
        S -= S.mean(axis=0)  # procrustes' default center=True: centre the normalised rows
        C -= C.mean(axis=0)
        if d_s == d_c:
            return orthogonal_procrustes(S, C)[0]  # argmin ‖Ŝ R − Ĉ‖: R = U Vᵀ of Ŝᵀ Ĉ
        u, _, vt = np.linalg.svd(S.T @ C, full_matrices=False)
        return u @ vt

    # Best of a few repeats: this box is shared, so one run can be slowed by other processes.
    seconds = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        T = fit_once()
        seconds = min(seconds, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    np.save(out, T)
    return {"seconds": seconds, "peak_mib": max(peak - baseline, 0) / 2**20}


def naive_bytes(n: int, d_s: int, d_c: int) -> int:
    # float32 chunks + float64 copies + norms/temporaries: ~3 float64-sized copies of all rows
    return n * (d_s + d_c) * (4 + 8 + 8 + 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10k, 100k only (default adds 1M)")
    parser.add_argument("--sizes", default=None, help="comma-separated N, e.g. 10000,100000,1000000")
    parser.add_argument("--d-s", type=int, default=64)
    parser.add_argument("--d-c", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=1024, help="rows per update (collect_statistics uses 64 texts)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads in each case's process")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats per case (N <= 1M; larger N runs once)")
    parser.add_argument("--case", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.d_s, args.d_c, args.chunk, args.out, args.repeats)))
        return

    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    sys.path.insert(0, str(HERE))
    from _common import header

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            result = {}
            for path in ("streaming", "naive"):
                need = naive_bytes(n, args.d_s, args.d_c)
                if path == "naive" and need > 0.6 * psutil.virtual_memory().available:
                    result[path] = None
                    skip_note = f"naive skipped: needs ~{need / 2**30:.0f} GiB, {psutil.virtual_memory().available / 2**30:.0f} GiB available"
                    continue
                out = os.path.join(tmp, f"{path}-{n}.npy")
                cmd = [sys.executable, __file__, "--case", path, str(n), "--d-s", str(args.d_s), "--d-c", str(args.d_c), "--chunk", str(args.chunk), "--out", out, "--repeats", str(args.repeats if n <= 1_000_000 else 1)]
                threads = str(args.threads)
                env = os.environ | {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                result[path] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"T": np.load(out)}
            diff = float(np.abs(result["streaming"]["T"] - result["naive"]["T"]).max()) if result["naive"] else None
            rows.append((n, result, diff, None if result["naive"] else skip_note))

    header(f"bench_fit: streaming vs naive Procrustes fit, d_s={args.d_s}, d_c={args.d_c}, chunks of {args.chunk} rows, {args.threads} thread(s)")
    print(f"# peak = RSS high-water mark above the post-import baseline, fresh subprocess per case; time = best of {args.repeats} (1 for N > 1M)")
    print(f"| {'N':>10} | {'streaming s':>11} | {'streaming peak MiB':>18} | {'naive s':>8} | {'naive peak MiB':>14} | {'peak ratio':>10} | {'max |ΔT|':>9} |")
    print(f"|{'-' * 12}|{'-' * 13}|{'-' * 20}|{'-' * 10}|{'-' * 16}|{'-' * 12}|{'-' * 11}|")
    notes = []
    for n, result, diff, note in rows:
        st, nv = result["streaming"], result["naive"]
        if nv:
            print(f"| {n:>10,} | {st['seconds']:>11.2f} | {st['peak_mib']:>18.1f} | {nv['seconds']:>8.2f} | {nv['peak_mib']:>14.1f} | {nv['peak_mib'] / max(st['peak_mib'], 0.1):>9.0f}x | {diff:>9.1e} |")
        else:
            print(f"| {n:>10,} | {st['seconds']:>11.2f} | {st['peak_mib']:>18.1f} | {'—':>8} | {'skipped':>14} | {'—':>10} | {'—':>9} |")
            notes.append(f"N={n:,}: {note}")
    for note in notes:
        print(f"# {note}")
    peaks = [r[1]["streaming"]["peak_mib"] for r in rows]
    flat = max(peaks) - min(peaks) < 32
    equal = all(d is None or d < 1e-5 for *_, d, _ in rows)
    print(f"# goal streaming peak flat in N: {'MET' if flat else 'NOT MET'} (spread {max(peaks) - min(peaks):.1f} MiB); T equal to 1e-5: {'MET' if equal else 'NOT MET'}")


if __name__ == "__main__":
    main()
