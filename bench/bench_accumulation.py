"""Cost and accuracy of the statistics update: float64 GEMM (what AlignmentStatistics does) vs float32 variants.

Run:  python bench/bench_accumulation.py [--quick]

One update = the two cross-product GEMMs (raw and row-normalised) of a chunk of 64 texts, at the
shape of a real run: subject d_s=576 (SmolLM2) x atlas d_c=16384 (a 16k SAE). Variants:
  float64          - inputs cast to float64, addmm_ into float64 sums (the library's choice)
  f32 GEMM, f64 sum - GEMM in float32 per chunk, the chunk's product added to float64 sums
  f32 Kahan        - float32 GEMM, float32 sums with Kahan compensation
  f32 naive        - float32 GEMM into float32 sums
Error: max |sum - float64 sum| / max |float64 sum| after all chunks. Inputs are max-pooled-like
(non-negative, heavy-tailed) so sums grow and float32 round-off shows.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import header

from atlas_align.fit.statistics import row_normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d_c=4096, 20 chunks")
    parser.add_argument("--d-s", type=int, default=576)
    parser.add_argument("--d-c", type=int, default=None)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--rows", type=int, default=64, help="texts per chunk (collect_statistics' chunk_size)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    d_s, d_c = args.d_s, args.d_c or (4096 if args.quick else 16384)
    n_chunks = args.chunks or (20 if args.quick else 40)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(args.rows, d_s, generator=gen).exp(), torch.relu(torch.randn(args.rows, d_c, generator=gen)) ** 2) for _ in range(n_chunks)]

    def f64(acc, s, c):
        s, c = s.double(), c.double()
        acc[0].addmm_(s.T, c)
        acc[1].addmm_(row_normalize(s).T, row_normalize(c))

    def f32_gemm_f64_sum(acc, s, c):
        acc[0] += (s.T @ c).double()
        acc[1] += (row_normalize(s).T @ row_normalize(c)).double()

    def f32_naive(acc, s, c):
        acc[0].addmm_(s.T, c)
        acc[1].addmm_(row_normalize(s).T, row_normalize(c))

    def f32_kahan(acc, s, c):
        for i, product in enumerate((s.T @ c, row_normalize(s).T @ row_normalize(c))):
            total, comp = acc[i], acc[2 + i]
            y = product - comp
            t = total + y
            comp.copy_((t - total) - y)
            total.copy_(t)

    variants = {
        "float64 (library)": (f64, torch.float64, 2),
        "f32 GEMM, f64 sum": (f32_gemm_f64_sum, torch.float64, 2),
        "f32 Kahan": (f32_kahan, torch.float32, 4),
        "f32 naive": (f32_naive, torch.float32, 2),
    }
    results = {}
    for name, (update, dtype, n_acc) in variants.items():
        acc = [torch.zeros(d_s, d_c, dtype=dtype) for _ in range(n_acc)]
        update(acc, *data[0])  # warm-up, then restart from zero
        for a in acc:
            a.zero_()
        start = time.perf_counter()
        for s, c in data:
            update(acc, s, c)
        results[name] = ((time.perf_counter() - start) / n_chunks, [a.double() for a in acc[:2]])
    ref = results["float64 (library)"][1]

    header(f"bench_accumulation: statistics update cost and float32 round-off, d_s={d_s} x d_c={d_c}, {args.rows}-row chunks")
    print(f"# {n_chunks} chunks ({n_chunks * args.rows} rows); time per update (both cross-products)")
    print(f"| {'variant':<18} | {'ms / update':>11} | {'vs float64':>10} | {'rel. error raw':>14} | {'rel. error normalised':>21} |")
    print(f"|{'-' * 20}|{'-' * 13}|{'-' * 12}|{'-' * 16}|{'-' * 23}|")
    base = results["float64 (library)"][0]
    for name, (seconds, sums) in results.items():
        errors = [float((got - want).abs().max() / want.abs().max()) for got, want in zip(sums, ref)]
        print(f"| {name:<18} | {seconds * 1e3:>11.1f} | {base / seconds:>9.2f}x | {errors[0]:>14.1e} | {errors[1]:>21.1e} |")


if __name__ == "__main__":
    main()
