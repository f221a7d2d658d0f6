"""Sequences/s of ActivationExtractor (hook + stop) vs a model truncated at the same layer vs the full forward.

Run:  python bench/bench_extraction.py [--quick]

Model: random-init LlamaForCausalLM with SmolLM2-135M's shape (built offline from a config),
SmolLM2's tokenizer, texts = 48-word windows of the built-in corpus, hook at layer 20 (resid). Paths run round-robin; the ratio uses each path's best round (this box is
shared, the minimum is the least-disturbed run) and the median is shown too.
All three paths tokenise, length-bucket and max-pool identically; they differ only in the forward:
  extractor  - ActivationExtractor.pooled_batches (forward hook raises once layer 20 has run)
  truncated  - a copy of the trunk with layers[:21] and the final norm removed, plain model(**batch)
  full       - the whole LlamaForCausalLM with output_hidden_states=True, pooling hidden_states[21]
Goal: extractor >= 0.9x truncated.
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import header, interleaved, median, smollm2_shaped_llama, texts, tokenizer
from torch import nn

from atlas_align.models.activations import ActivationExtractor, masked_max_pool, resolve_hookpoint

LAYER = 20


def bucketed_pool(tok, texts_, forward, batch_size: int, max_length: int, group_batches: int = 8) -> torch.Tensor:
    """Same bucketing and pooling as the extractor, with ``forward(inputs) -> (B, T, d)`` pluggable."""
    out = []
    group_size = batch_size * group_batches
    for g in range(0, len(texts_), group_size):
        group = texts_[g : g + group_size]
        order = sorted(range(len(group)), key=lambda i: len(group[i]))
        parts = []
        for s in range(0, len(order), batch_size):
            enc = tok([group[i] for i in order[s : s + batch_size]], padding=True, truncation=True, max_length=max_length, return_special_tokens_mask=True, return_tensors="pt")
            mask = enc.pop("special_tokens_mask").to(torch.bool).logical_not() & enc["attention_mask"].to(torch.bool)
            with torch.inference_mode():
                parts.append(masked_max_pool(forward({k: enc[k] for k in ("input_ids", "attention_mask")}).float(), mask))
        pooled = torch.cat(parts)
        restored = torch.empty_like(pooled)
        restored[torch.tensor(order)] = pooled
        out.append(restored)
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 texts, 1 round (a smoke run for CI)")
    parser.add_argument("--texts", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_texts = args.texts or (16 if args.quick else 192)
    rounds = args.rounds or (1 if args.quick else 3)

    tok = tokenizer()
    model = smollm2_shaped_llama()
    corpus = texts(n_texts)
    hook = resolve_hookpoint(model, LAYER)
    extractor = ActivationExtractor(model, tok, hook, batch_size=args.batch_size, max_length=args.max_length)

    trunk = copy.deepcopy(model.model)  # baseline: a model that simply has 21 layers and no final norm
    trunk.layers = nn.ModuleList(trunk.layers[: LAYER + 1])
    trunk.config.num_hidden_layers = LAYER + 1
    trunk.norm = nn.Identity()

    def truncated_forward(inputs):
        return trunk(**inputs, use_cache=False).last_hidden_state

    def full_forward(inputs):
        return model(**inputs, use_cache=False, output_hidden_states=True).hidden_states[LAYER + 1]

    paths = {
        "extractor": lambda: torch.cat(list(extractor.pooled_batches(corpus))),
        "truncated": lambda: bucketed_pool(tok, corpus, truncated_forward, args.batch_size, args.max_length),
        "full": lambda: bucketed_pool(tok, corpus, full_forward, args.batch_size, args.max_length),
    }
    # Same numbers from all three (otherwise the comparison would be meaningless); also warms up.
    small = corpus[: args.batch_size]
    ref = torch.cat(list(extractor.pooled_batches(small)))
    for name, fwd in (("truncated", truncated_forward), ("full", full_forward)):
        got = bucketed_pool(tok, small, fwd, args.batch_size, args.max_length)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4, msg=f"{name} pooled differently from the extractor")

    times = interleaved(paths, rounds)
    n_tokens = sum(len(tok(t, truncation=True, max_length=args.max_length)["input_ids"]) for t in corpus)

    header("bench_extraction: pooled activations at layer 20 of a SmolLM2-135M-shaped random-init Llama")
    print(f"# {n_texts} texts ({n_tokens / n_texts:.0f} tokens avg), batch {args.batch_size}, {rounds} interleaved rounds; seq/s from the best round")
    base = n_texts / min(times["truncated"])
    base_median = n_texts / median(times["truncated"])
    print(f"| {'path':<38} | {'seq/s':>8} | {'best s':>7} | {'median s':>9} | {'vs truncated (best)':>19} | {'(median)':>8} |")
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 9}|{'-' * 11}|{'-' * 21}|{'-' * 10}|")
    labels = {
        "extractor": "ActivationExtractor (hook + stop)",
        "truncated": "model cut to 21 layers, model(**batch)",
        "full": "full 30-layer forward + hidden_states",
    }
    for name, ts in times.items():
        rate = n_texts / min(ts)
        print(f"| {labels[name]:<38} | {rate:>8.2f} | {min(ts):>7.2f} | {median(ts):>9.2f} | {rate / base:>18.3f}x | {n_texts / median(ts) / base_median:>7.3f}x |")
    ratio = (n_texts / min(times["extractor"])) / base
    print(f"# goal extractor >= 0.9x truncated: {'MET' if ratio >= 0.9 else 'NOT MET'} ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
