"""Layer sweep cost: `align --layers` over k layers vs a single-layer `align`, measured in the same run.

Run:  python bench/bench_sweep.py [--quick] [--threads N]

Full run: the real SmolLM2-135M (`smollm2`, 30 blocks) as subject, the built-in atlas (MiniLM
layer 3 + SAE), N texts of the built-in corpus, layers 0.25,0.5,0.75,-2 (blocks 7, 14, 22, 28).
--quick: a random-init Llama with 8 blocks of width 64 (built offline), 160 texts, 1 round.
N must exceed the subject's width (576 for SmolLM2) or Procrustes refuses to fit: full runs use 600.

Rows (each path round-robin, `repeats` rounds; ratio from the best round, median shown too):
  single@deepest  run_alignment at the sweep's deepest block (the same forward depth as the sweep)
  single@0.66     run_alignment at the default relative depth
  sweep k         run_alignment_sweep over the k layers (one forward pass per batch)
and the subject-extraction part alone (LayerSweepExtractor vs ActivationExtractor at the deepest
block), which leaves out the atlas pass both paths share. Goal: sweep ≤ 1.3× a single-layer run.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import header, interleaved, median, smollm2_shaped_llama, tokenizer

from atlas_align.alignment.pipeline import AlignRequest, run_alignment, run_alignment_sweep, sweep_hookpoints
from atlas_align.atlas.spaces import load_atlas_space
from atlas_align.corpus.sources import CorpusConfig, iter_samples
from atlas_align.models.activations import ActivationExtractor, LayerSweepExtractor

LAYERS = [0.25, 0.5, 0.75, -2]
GOAL = 1.3


def _pipeline(hooks, deepest, single, sweep, rounds) -> tuple[float, float]:
    """Whole align runs, round-robin: single layer at the deepest block, at --layer 0.66, and the sweep."""
    k = len(hooks)
    paths = {f"single layer (block {deepest}, the deepest)": single(deepest), "single layer (--layer 0.66)": single(0.66), f"sweep of {k} layers ({', '.join(str(h.layer) for h in hooks)})": sweep}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_index in range(rounds):  # round-robin, so drift and noise hit every path alike
        outputs = {}
        for name, fn in paths.items():
            begin = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - begin)
        if round_index == 0:  # the sweep's fit at its deepest block is the single-layer fit (same pass, same statistics)
            swept = outputs[list(paths)[-1]][[h.layer for h in hooks].index(deepest)].alignment.T
            torch.testing.assert_close(swept, outputs[list(paths)[0]].alignment.T, rtol=1e-5, atol=1e-6)
    base_name = next(iter(paths))
    best = {name: min(t) for name, t in times.items()}
    med = {name: median(t) for name, t in times.items()}
    for name in paths:
        print(f"| {name:<56} | {best[name]:>7.2f} | {med[name]:>8.2f} | {best[name] / best[base_name]:>23.3f}x | {med[name] / med[base_name]:>7.3f}x |")

    sweep_name = list(paths)[-1]
    return best[sweep_name] / best[base_name], best[sweep_name] / best["single layer (--layer 0.66)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8-block random-init model, 160 texts, 1 round (a smoke run for CI)")
    parser.add_argument("--extraction-only", action="store_true", help="time only the subject extraction (k layers vs the deepest one), not whole align runs")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable timings on a shared box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = args.samples or (160 if args.quick else 600)
    rounds = args.rounds or (1 if args.quick else 2)
    header(f"bench_sweep: sweep of {len(LAYERS)} layers vs one layer, {samples} texts, batch {args.batch_size}, {rounds} round(s), {args.threads} thread(s)")

    start = time.perf_counter()
    if args.quick:
        small = dict(num_hidden_layers=8, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
        model, tok, model_id = smollm2_shaped_llama(**small), tokenizer(), "random-init/llama-8-blocks-d64"
    else:
        from atlas_align.models.loading import load_subject

        model, tok, model_id = load_subject("smollm2")
    atlas = None if args.extraction_only else load_atlas_space("builtin", batch_size=args.batch_size, max_length=128)
    print(f"# subject {model_id}; atlas {'—' if atlas is None else 'builtin'}; loaded in {time.perf_counter() - start:.1f}s")
    bundle = (model, tok, model_id)
    req = AlignRequest(subject=model_id, atlas="builtin", corpus=CorpusConfig(), samples=samples, heldout_samples=0, batch_size=args.batch_size)
    hooks = sweep_hookpoints(model, LAYERS)
    deepest = max(h.layer for h in hooks)
    k = len(hooks)

    def single(layer):
        return lambda: run_alignment(req.model_copy(update={"layer": layer}), progress=False, subject_bundle=bundle, atlas_space=atlas)

    def sweep():
        return run_alignment_sweep(req, LAYERS, progress=False, subject_bundle=bundle, atlas_space=atlas)

    print(f"| {'what (an align run = subject + atlas pass + fit)':<56} | {'best s':>7} | {'median s':>8} | {'vs deepest single (best)':>24} | {'(median)':>8} |")
    if not args.extraction_only:
        ratio, vs_default = _pipeline(hooks, deepest, single, sweep, rounds)
    texts = [s.text for s in iter_samples(CorpusConfig(), "train", limit=min(samples, 128))]
    one = ActivationExtractor(model, tok, hooks[[h.layer for h in hooks].index(deepest)], batch_size=args.batch_size)
    many = LayerSweepExtractor(model, tok, hooks, batch_size=args.batch_size)
    torch.testing.assert_close(torch.cat(list(many.pooled_batches(texts)))[:, [h.layer for h in hooks].index(deepest)], torch.cat(list(one.pooled_batches(texts))))
    ext = interleaved({"one": lambda: list(one.pooled_batches(texts)), "many": lambda: list(many.pooled_batches(texts))}, rounds)
    ext_ratio, ext_median = min(ext["many"]) / min(ext["one"]), median(ext["many"]) / median(ext["one"])
    print(f"| {'extraction only (' + str(len(texts)) + ' texts): ' + str(k) + ' layers vs block ' + str(deepest):<56} | {min(ext['many']):>7.2f} | {median(ext['many']):>8.2f} | {ext_ratio:>23.3f}x | {ext_median:>7.3f}x |")

    if not args.extraction_only:
        print(f"# ratio sweep of {k} layers / single-layer run: {ratio:.3f}x (vs the deepest block), {vs_default:.3f}x (vs --layer 0.66); "
              f"goal ≤ {GOAL}x: {'MET' if ratio <= GOAL else 'NOT MET'} (k separate runs would cost ~{k}x)")  # fmt: skip
    else:
        print(f"# ratio extraction of {k} layers / one layer: {ext_ratio:.3f}x; goal ≤ {GOAL}x: {'MET' if ext_ratio <= GOAL else 'NOT MET'} (k separate passes: ~{k}x)")


if __name__ == "__main__":
    main()
