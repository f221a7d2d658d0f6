"""Tokens/s of model.generate with and without steer(...) at layer 20.

Run:  python bench/bench_steering.py [--quick]

Model: random-init LlamaForCausalLM with SmolLM2-135M's full shape (30 layers, d=576), SmolLM2's
tokenizer, greedy decoding of exactly --new-tokens tokens with the KV cache on. The steered run
wraps generate in ``steer(model, "layers.20", direction, 4.0, absolute=True)`` (a forward hook doing the
norm-preserving add at every position of every step). Plain and steered runs alternate; the
figure is the best of the rounds (the machine is shared; the minimum is the least-disturbed run).
Goal: steered <= 5 % slower.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
from _common import header, interleaved, smollm2_shaped_llama, tokenizer
from torch import nn

from atlas_align.models.steering import steer


def hook_overhead_seconds(batch: int, hidden: int, direction: torch.Tensor, calls: int = 2000) -> float:
    """Per-call cost of the steering hook alone (dispatch + norm-preserving add) on one decode step's (B, 1, d)."""

    class Holder(nn.Module):  # the smallest "model" steer() accepts: a config and one module to hook
        def __init__(self) -> None:
            super().__init__()
            self.config = SimpleNamespace(hidden_size=hidden)
            self.block = nn.Identity()

    holder, x = Holder(), torch.randn(batch, 1, hidden)

    def run() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(calls):
                holder.block(x)
        return (time.perf_counter() - start) / calls

    bare = min(run() for _ in range(3))
    with steer(holder, "block", direction, 4.0, absolute=True):
        hooked = min(run() for _ in range(3))
    return hooked - bare


PROMPT = "The history of the horse is closely tied to the people who rode it, and"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 new tokens, 2 rounds, batch 1 only (a smoke run for CI)")
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    new_tokens = args.new_tokens or (8 if args.quick else 24)
    rounds = args.rounds or (2 if args.quick else 6)
    batches = (1,) if args.quick else (1, 4)
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = tokenizer()
    model = smollm2_shaped_llama()
    direction = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    direction /= direction.norm()

    rows = []
    for batch in batches:
        # generate() refuses keys the model does not take (BERT-style tokenizers return token_type_ids)
        enc = {k: v for k, v in tok([PROMPT] * batch, return_tensors="pt").items() if k in ("input_ids", "attention_mask")}
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)

        def plain(enc=enc, kwargs=kwargs):
            with torch.inference_mode():
                model.generate(**enc, **kwargs)

        def steered(enc=enc, kwargs=kwargs):
            with torch.inference_mode(), steer(model, "layers.20", direction, 4.0, absolute=True):
                model.generate(**enc, **kwargs)

        plain()
        steered()  # warm-up
        times = interleaved({"plain": plain, "steered": steered}, rounds)
        rows.append((batch, times, hook_overhead_seconds(batch, model.config.hidden_size, direction, calls=500 if args.quick else 2000)))

    header("bench_steering: generate() tokens/s with and without steer() on a SmolLM2-135M-shaped random-init Llama")
    print(f"# greedy, {new_tokens} new tokens, prompt {enc['input_ids'].shape[1]} tokens, {rounds} alternating rounds, best-of and median")
    print("# hook cost = the steering hook alone on one decode step's (B, 1, 576) activations, timed in isolation;")
    print("# its share of a decode step is the noise-free bound on the slowdown")
    print(f"| {'batch':>5} | {'plain tok/s (best)':>18} | {'steered tok/s (best)':>20} | {'slowdown best':>13} | {'slowdown median':>15} | {'hook µs/step':>12} | {'hook share':>10} |")
    print(f"|{'-' * 7}|{'-' * 20}|{'-' * 22}|{'-' * 15}|{'-' * 17}|{'-' * 14}|{'-' * 12}|")
    worst = float("-inf")
    for batch, times, hook_s in rows:
        tokens = batch * new_tokens
        p, s = min(times["plain"]), min(times["steered"])
        slow = s / p - 1
        slow_median = statistics.median(times["steered"]) / statistics.median(times["plain"]) - 1
        share = hook_s / (p / new_tokens)
        worst = max(worst, slow, share)
        print(f"| {batch:>5} | {tokens / p:>18.1f} | {tokens / s:>20.1f} | {slow:>+12.1%} | {slow_median:>+14.1%} | {hook_s * 1e6:>12.1f} | {share:>9.2%} |")
    print(f"# goal steered <= 5% slower: {'MET' if worst <= 0.05 else 'NOT MET'} (worst of best-of slowdown and hook share: {worst:+.2%})")


if __name__ == "__main__":
    main()
