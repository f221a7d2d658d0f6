"""Measure pooling rules (attention sink handling) on real causal LMs → docs/pooling.json + docs/pooling.md.

For each subject model the corpus is read once: every batch's hidden states at the layer are
pooled under each rule, so all rules see the same texts. The atlas side is the built-in MiniLM
SAE atlas (an encoder: its CLS/SEP are masked as special tokens, no sink rule applies). For every
rule we fit Procrustes centred (our default) and uncentred (the paper's form) on a uniform sample
of train windows and report held-out text matching (top-1, MRR; ties count against the match)
against a derangement control, plus how often position 0 wins the max.

    python scripts/measure_pooling.py                      # SmolLM2, Gemma-3-270M, Qwen2.5-0.5B
    python scripts/measure_pooling.py --models smollm2:20 --train 400 --heldout 100   # quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from atlas_align.alignment.model import AtlasAlignment
from atlas_align.alignment.pipeline import derangement, match_ranks
from atlas_align.atlas.spaces import load_atlas_space
from atlas_align.corpus.sources import CorpusConfig, iter_samples
from atlas_align.files import atomic_write_text
from atlas_align.fit.methods import get_method
from atlas_align.fit.statistics import AlignmentStatistics, row_normalize
from atlas_align.models.activations import base_model, is_causal_lm, masked_max_pool, pooling_mask, resolve_hookpoint
from atlas_align.models.hooks import forward_to
from atlas_align.models.loading import load_subject
from atlas_align.refs import AtlasRef, PoolingConfig, SubjectRef

# The committed docs were measured with the first built-in atlas; named explicitly so a re-run reproduces them
# now that 'builtin' is the 4k atlas (issue 14).
FIRST_ATLAS = "builtin:minilm-l3-wordnet"

RULES = {
    "plain (specials masked)": PoolingConfig.legacy(),
    "typed specials masked": PoolingConfig(exclude_first="never"),
    "drop first token": PoolingConfig(exclude_first="always"),
    "drop norm > 5× median": PoolingConfig(exclude_first="never", outlier_ratio=5.0),
    "drop norm > 20× median": PoolingConfig(exclude_first="never", outlier_ratio=20.0),
    "drop first + norm > 5× median": PoolingConfig(exclude_first="always", outlier_ratio=5.0),
}
DEFAULT_MODELS = "smollm2:20,gemma3-270m:12,qwen-coder-0.5b:16"


@torch.inference_mode()
def pooled_under_rules(model, tokenizer, layer: int, texts: list[str], batch_size: int, max_length: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    hook = resolve_hookpoint(model, layer)
    module = base_model(model).get_submodule(hook.path)
    special_ids = tuple(tokenizer.all_special_ids)
    causal = is_causal_lm(model)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in RULES}
    first_wins, sink_ratio = [], []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_special_tokens_mask=True, return_tensors="pt")
        special = enc.pop("special_tokens_mask")
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        acts = forward_to(model, module, inputs).float()
        norms = acts.norm(dim=-1)
        for name, rule in RULES.items():
            mask = pooling_mask(enc["attention_mask"], special, rule, causal=causal, input_ids=enc["input_ids"], special_ids=special_ids, norms=norms)
            out[name].append(masked_max_pool(acts, mask))
        plain = pooling_mask(enc["attention_mask"], special, PoolingConfig.legacy(), causal=causal)
        first = plain.to(torch.int8).argmax(dim=1)
        filled = acts.masked_fill(~plain.unsqueeze(-1), float("-inf"))
        winners = filled.argmax(dim=1)  # (B, d): which position gives each dimension's max
        first_wins.append((winners == first[:, None]).float().mean(1))
        med = norms.masked_fill(~plain, float("nan")).nanmedian(dim=1).values
        sink_ratio.append(norms[torch.arange(len(first)), first] / med)
    diagnostics = {
        "dims_whose_max_is_the_first_token": float(torch.cat(first_wins).mean()),
        "first_token_norm_over_median": float(torch.cat(sink_ratio).median()),
    }
    return {k: torch.cat(v) for k, v in out.items()}, diagnostics


def heldout_scores(train_s, train_c, held_s, held_c, center: bool, d_c: int) -> dict[str, float]:
    stats = AlignmentStatistics(train_s.shape[1], d_c, False)
    stats.update(train_s.double(), train_c.double())
    method = get_method("procrustes", center=center).fit(stats)
    config_kwargs = dict(subject=SubjectRef(model_id="m", hookpoint="h"), atlas=AtlasRef(atlas_id="a"), method="procrustes", d_s=train_s.shape[1], d_c=d_c)
    from atlas_align.alignment.artifact import AlignmentConfig

    al = AtlasAlignment(AlignmentConfig(**config_kwargs), method.T_, method.subject_shift_, method.subject_scale_)
    target = row_normalize(held_c)
    target = row_normalize(target - target.mean(0))
    sims = row_normalize(al.translate_to_atlas(held_s)) @ target.T
    ranks = match_ranks(sims).double()
    control = sims[:, derangement(len(sims), seed=0)]  # each translation scored against a random other text's atlas row
    c_ranks = match_ranks(control).double()
    return {"top1": float((ranks == 1).double().mean()), "mrr": float((1 / ranks).mean()), "control_mrr": float((1 / c_ranks).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated NAME:LAYER")
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--heldout", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--out", default="docs/pooling.json")
    parser.add_argument("--merge", action="store_true", help="keep other models' entries already in --out (same train/held-out sizes)")
    args = parser.parse_args()
    corpus = CorpusConfig()
    train = [s.text for s in iter_samples(corpus, "train", limit=args.train)]
    held = [s.text for s in iter_samples(corpus, "heldout", limit=args.heldout)]
    atlas = load_atlas_space(FIRST_ATLAS, batch_size=args.batch_size, max_length=args.max_length)
    t0 = time.perf_counter()
    train_c, held_c = torch.cat(list(atlas.pooled_batches(train))), torch.cat(list(atlas.pooled_batches(held)))
    print(f"atlas pooled in {time.perf_counter() - t0:.0f}s", flush=True)
    results = {"train": len(train), "heldout": len(held), "atlas": f"{FIRST_ATLAS} (MiniLM L3 + TopK SAE)", "corpus": "builtin WordNet, uniform sample", "models": {}}
    out = Path(args.out)
    if args.merge and out.is_file():
        previous = json.loads(out.read_text())
        if (previous["train"], previous["heldout"]) != (len(train), len(held)):
            raise SystemExit(f"{out} was measured on {previous['train']}/{previous['heldout']} texts; pass the same --train/--heldout to merge")
        results["models"] = previous["models"]
    for spec in args.models.split(","):
        name, layer = spec.split(":")
        t0 = time.perf_counter()
        model, tokenizer, model_id = load_subject(name)
        pooled_train, diag = pooled_under_rules(model, tokenizer, int(layer), train, args.batch_size, args.max_length)
        pooled_held, _ = pooled_under_rules(model, tokenizer, int(layer), held, args.batch_size, args.max_length)
        entry = {"model_id": model_id, "layer": int(layer), **diag, "rules": {}}
        for rule in RULES:
            entry["rules"][rule] = {
                "centred": heldout_scores(pooled_train[rule], train_c, pooled_held[rule], held_c, True, atlas.width),
                "uncentred (paper)": heldout_scores(pooled_train[rule], train_c, pooled_held[rule], held_c, False, atlas.width),
            }
            print(f"{name} L{layer} {rule:32s} {entry['rules'][rule]}", flush=True)
        entry["seconds"] = round(time.perf_counter() - t0)
        results["models"][name] = entry
        del model
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")  # after every model: a long run keeps what it measured
        atomic_write_text(out.with_suffix(".md"), render_markdown(results))
        print("wrote", out, out.with_suffix(".md"), flush=True)


def render_markdown(results: dict) -> str:
    lines = [
        f"Held-out text matching (MRR; top-1 in brackets), {results['train']} train / {results['heldout']} held-out texts, "
        f"atlas {results['atlas']}, {results['corpus']}. Generated by `scripts/measure_pooling.py`.",
        "",
        "| model (layer) | pooling rule | centred Procrustes | uncentred (paper) | control |",
        "|---|---|---|---|---|",
    ]
    for name, entry in results["models"].items():
        for rule, fits in entry["rules"].items():
            c, u = fits["centred"], fits["uncentred (paper)"]
            lines.append(f"| {name} ({entry['layer']}) | {rule} | {c['mrr']:.3f} ({c['top1']:.3f}) | {u['mrr']:.3f} ({u['top1']:.3f}) | {c['control_mrr']:.3f} |")
    lines += ["", "| model (layer) | first token's norm / median | dims whose max is the first token (plain pooling) |", "|---|---|---|"]
    for name, entry in results["models"].items():
        lines.append(f"| {name} ({entry['layer']}) | {entry['first_token_norm_over_median']:.1f}× | {entry['dims_whose_max_is_the_first_token']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
