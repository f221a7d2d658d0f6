"""p50/p95 latency of FeatureLabels.search over 16k and 1M synthetic labelled features.

Run:  python bench/bench_search.py [--quick]

Labels: 1-6 words drawn by frequency from the built-in WordNet corpus (so common words recur the
way they do in real auto-interp labels, e.g. "references to dogs and other pets"). Queries: 300,
a fixed mix of one-word content queries (60 %), two-word queries (25 %), exact labels (10 %) and
words no label contains (5 %). The first query after construction pays any lazy index build; it
is reported separately and not part of p50/p95.
Goal: p50 < 10 ms at 16k features.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections import Counter

from _common import header

from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import CorpusConfig, iter_samples

STOPWORDS = set("the of a or in to and that an with by for is as on from he s one be it its are at which who".split())


def vocabulary() -> tuple[list[str], list[int]]:
    counts: Counter[str] = Counter()
    for sample in iter_samples(CorpusConfig(), "all", limit=20_000):
        counts.update(re.findall(r"[a-z0-9]+", sample.text.lower()))
    words, freqs = zip(*counts.most_common())
    return list(words), list(freqs)


def synthetic_labels(n: int, words: list[str], freqs: list[int], rng: random.Random) -> list[FeatureLabel]:
    lengths = rng.choices(range(1, 7), weights=(15, 30, 25, 15, 10, 5), k=n)
    flat = rng.choices(words, weights=freqs, k=sum(lengths))
    out, pos = [], 0
    for i, k in enumerate(lengths):
        label = " ".join(flat[pos : pos + k])
        pos += k
        out.append(FeatureLabel(feature=i, label=label, score=rng.random(), source="synthetic", validated=rng.random() < 0.05))
    return out


def queries(labels: list[FeatureLabel], words: list[str], freqs: list[int], rng: random.Random, n: int = 300) -> list[str]:
    content = [(w, f) for w, f in zip(words, freqs) if w not in STOPWORDS and len(w) > 2]
    cw, cf = zip(*content)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.60:
            out.append(rng.choices(cw, weights=cf)[0])
        elif r < 0.85:
            out.append(" ".join(rng.choices(cw, weights=cf, k=2)))
        elif r < 0.95:
            out.append(rng.choice(labels).label)
        else:
            out.append(f"zzq{rng.randrange(10**6)}")
    return out


def measure(n: int, words, freqs, rng) -> dict:
    labels = synthetic_labels(n, words, freqs, rng)
    table = FeatureLabels(labels)
    qs = queries(labels, words, freqs, rng)
    start = time.perf_counter()
    table.search(qs[0])
    first = time.perf_counter() - start
    lat = []
    for q in qs:
        start = time.perf_counter()
        table.search(q, top_k=10)
        lat.append(time.perf_counter() - start)
    lat.sort()
    return {
        "first_ms": first * 1e3,
        "p50_ms": statistics.median(lat) * 1e3,
        "p95_ms": lat[int(0.95 * (len(lat) - 1))] * 1e3,
        "max_ms": lat[-1] * 1e3,
        "queries": len(qs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16k and 100k features only")
    parser.add_argument("--sizes", default=None, help="comma-separated feature counts")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([16_384, 100_000] if args.quick else [16_384, 1_000_000])
    words, freqs = vocabulary()
    results = [(n, measure(n, words, freqs, random.Random(n))) for n in sizes]

    header("bench_search: FeatureLabels.search latency over synthetic labelled features")
    print(f"# {len(words):,}-word vocabulary from the built-in corpus; 300 mixed queries per size, top_k=10")
    print(f"| {'features':>10} | {'first query ms':>14} | {'p50 ms':>7} | {'p95 ms':>7} | {'max ms':>7} |")
    print(f"|{'-' * 12}|{'-' * 16}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for n, r in results:
        print(f"| {n:>10,} | {r['first_ms']:>14.1f} | {r['p50_ms']:>7.2f} | {r['p95_ms']:>7.2f} | {r['max_ms']:>7.1f} |")
    p50 = next((r["p50_ms"] for n, r in results if n == 16_384), None)
    if p50 is not None:
        print(f"# goal p50 < 10 ms at 16k: {'MET' if p50 < 10 else 'NOT MET'} ({p50:.2f} ms)")


if __name__ == "__main__":
    main()
