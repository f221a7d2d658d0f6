"""Retrieval as the paper measured it, too: ``retrieval@2`` with held-out texts vs synthetic concept sequences.

For each subject (default: SmolLM2-135M-Instruct at relative depth 0.66), Procrustes is fitted exactly as
``scripts/measure_steering.py`` fits it (1,000 uniform training texts of the built-in corpus, pooled
activations from the activation cache), the context is built the same way (300 held-out texts drawn
with ``VERIFY_SEED``), and ``retrieval@2`` runs once per query generator:

- ``heldout``: held-out corpus texts of the concept's category (the benchmark's default);
- ``template``: neutral template sentences filled with WordNet member lemmas of the category;
- ``llm``: one sentence per prompt written by a local instruct LM (default Qwen2.5-Coder-0.5B-Instruct,
  de-quantised 4-bit GGUF), greedy, cut to the first sentence.

Each generator runs twice: plain, and with ``center=True`` (each concept's translated query vector minus
the mean over concepts, so features every concept's sequences raise alike stop topping every concept).

The synthetic sequences (``template``, ``llm``) are stored per (generator, model, category, n, seed) in
docs/retrieval_queries_sequences.json and reused on re-runs, so the llm sequences are generated once
(``--regenerate`` writes them anew).

Writes docs/retrieval_queries.json, docs/retrieval_queries_sequences.json and docs/RETRIEVAL_QUERIES.md.

    ATLAS_ALIGN_ACTIVATION_CACHE=/work/acts-cache python scripts/compare_query_generators.py
    python scripts/compare_query_generators.py --no-llm --models smollm2:0.66 gemma3-270m:0.66
    python scripts/compare_query_generators.py --render-only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

EXAMPLE_CONCEPT = "noun.animal"  # examples come from this concept when the atlas validates it
N_EXAMPLES = 2
STORED_GENERATORS = ("template", "llm")  # heldout reads the held-out sample; nothing to store
SEQUENCES_FILE = "retrieval_queries_sequences.json"
MODES = ("plain", "centered")


class SequenceStore:
    """Concept sequences per (generator, model, category, n, seed), in a JSON file: looked up before a
    generator runs, written after a generator had to run."""

    def __init__(self, path: Path, regenerate: bool = False) -> None:
        self.path = path
        stored = json.loads(path.read_text(encoding="utf-8"))["sequences"] if path.is_file() and not regenerate else []
        self.entries = {self.key(e["generator"], e["model"], e["category"], e["n"], e["seed"]): e for e in stored}
        self.reused, self.generated = Counter(), Counter()

    @staticmethod
    def key(generator: str, model: str | None, category: str, n: int, seed: int) -> str:
        return json.dumps([generator, model, category, n, seed])

    def wrap(self, generator: str, fn: Callable, model_id: Callable[[str | None], str | None]) -> Callable:
        @wraps(fn)  # keeps fn's signature: retrieval passes model= only to generators that take one
        def cached(ctx, category, features, n, seed, **options):
            model = model_id(options.get("model"))
            key = self.key(generator, model, category, n, seed)
            if key in self.entries:
                self.reused[generator] += 1
                return list(self.entries[key]["sequences"])
            texts = fn(ctx, category, features, n, seed, **options)
            self.entries[key] = {"generator": generator, "model": model, "category": category, "n": n, "seed": seed, "sequences": list(texts)}
            self.generated[generator] += 1
            self.save()
            return texts

        return cached

    def save(self) -> None:
        entries = [self.entries[k] for k in sorted(self.entries)]
        note = "Concept sequences of scripts/compare_query_generators.py, reused on re-runs; model: the LM that wrote them (null: none)."
        self.path.write_text(json.dumps({"note": note, "sequences": entries}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


@contextmanager
def stored_generators(registry, store: SequenceStore, default_model: str):
    """Route the synthetic generators of ``registry`` through ``store`` while the block runs."""
    from atlas_align.models.assets import canonical_model_id

    def model_id(generator: str) -> Callable[[str | None], str | None]:
        return (lambda model: canonical_model_id(model or default_model)) if generator == "llm" else (lambda model: None)

    wrapped = {g: store.wrap(g, registry.get(g), model_id(g)) for g in STORED_GENERATORS if g in registry}
    with mock.patch.dict(registry._items, wrapped):
        yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2:0.66"], help="NAME:LAYER (index or relative depth), e.g. gemma3-270m:0.66")
    parser.add_argument("--generator-model", default="qwen-coder-0.5b", help="packaged name or folder of the LM that writes the llm sequences")
    parser.add_argument("--no-llm", action="store_true", help="skip the llm generator")
    parser.add_argument("--queries-per-concept", type=int, default=16)
    parser.add_argument("--cache", default=os.environ.get("ATLAS_ALIGN_ACTIVATION_CACHE"), help="activation cache folder (default: $ATLAS_ALIGN_ACTIVATION_CACHE or a temporary one)")
    parser.add_argument("--out", default=str(REPO / "docs"))
    parser.add_argument("--render-only", action="store_true", help="rebuild RETRIEVAL_QUERIES.md from retrieval_queries.json")
    parser.add_argument("--regenerate", action="store_true", help=f"ignore the stored sequences in {SEQUENCES_FILE} and write them anew")
    args = parser.parse_args()
    out = Path(args.out)
    if args.render_only:
        return render(json.loads((out / "retrieval_queries.json").read_text(encoding="utf-8")), out)

    import tempfile

    os.environ["ATLAS_ALIGN_ACTIVATION_CACHE"] = args.cache or tempfile.mkdtemp(prefix="atlas-align-acts-")
    from build_demo_leaderboard import parse_model
    from measure_steering import fit_alignment, shared_inputs

    from atlas_align.harness.benchmarks import get_benchmark
    from atlas_align.harness.benchmarks.base import validated_concepts
    from atlas_align.harness.benchmarks.queries import DEFAULT_GENERATOR_MODEL, LLM_MAX_NEW_TOKENS, LLM_PROMPT, TEMPLATES
    from atlas_align.harness.benchmarks.retrieval import QUERY_GENERATORS
    from atlas_align.harness.evaluation import build_context
    from atlas_align.leaderboard.verify import VERIFY_SEED
    from atlas_align.models.assets import KNOWN_MODELS, canonical_model_id

    t_start = time.perf_counter()
    cache, train, heldout, atlas, atlas_train, cached_atlas = shared_inputs()
    generators = ["heldout", "template"] + ([] if args.no_llm else ["llm"])
    out.mkdir(parents=True, exist_ok=True)
    store = SequenceStore(out / SEQUENCES_FILE, regenerate=args.regenerate)
    known = KNOWN_MODELS.get(args.generator_model)
    report = {
        "benchmark": None, "train_texts": len(train), "heldout_texts": len(heldout), "seed": VERIFY_SEED,
        "queries_per_concept": args.queries_per_concept, "generators": generators,
        "generator_model": None if args.no_llm else canonical_model_id(args.generator_model),
        "generator_model_note": None if args.no_llm or known is None else known.description,
        "llm_prompt": LLM_PROMPT, "llm_max_new_tokens": LLM_MAX_NEW_TOKENS, "templates": {k: list(v) for k, v in TEMPLATES.items()},
        "sequences_file": f"docs/{SEQUENCES_FILE}", "models": [],
    }  # fmt: skip
    for spec in args.models:
        name, (layer,) = parse_model(spec)
        t0 = time.perf_counter()
        alignment, bundle = fit_alignment(name, layer, cache, atlas, atlas_train, train)
        ctx = build_context(alignment, subject_bundle=bundle, atlas_space=cached_atlas, heldout=heldout, seed=VERIFY_SEED)
        concepts = validated_concepts(ctx.labels)
        example = EXAMPLE_CONCEPT if EXAMPLE_CONCEPT in concepts else next(iter(concepts))
        entry = {"name": name, "subject": bundle[2], "layer": alignment.config.subject.layer, "n_layers": alignment.config.subject.n_layers,
                 "depth": layer, "fit_s": round(time.perf_counter() - t0), "example_concept": example, "generators": {}}  # fmt: skip
        print(f"{name} block {entry['layer']}: fitted in {entry['fit_s']} s", flush=True)
        for generator in generators:
            t1 = time.perf_counter()
            params = {"generator": generator, "queries_per_concept": args.queries_per_concept}
            if generator == "llm":
                params["generator_model"] = args.generator_model
            options = {"model": args.generator_model} if generator == "llm" else {}
            with stored_generators(QUERY_GENERATORS, store, DEFAULT_GENERATOR_MODEL):
                results = {mode: get_benchmark("retrieval", **params, center=mode == "centered").run(ctx) for mode in MODES}
                sequences = QUERY_GENERATORS.get(generator)(ctx, example, concepts[example], args.queries_per_concept, ctx.seed, **options)
            plain = results["plain"]
            report["benchmark"] = plain.benchmark
            g = entry["generators"][generator] = {
                "n_concepts": int(plain.metrics["n_concepts"]), "n_queries": int(plain.metrics["n_queries"]),
                "n_sequences": sum(d["n_sequences"] for d in plain.details), "heldout_fingerprint": plain.provenance.heldout_fingerprint,
                "examples": sequences[:N_EXAMPLES], "wall_s": round(time.perf_counter() - t1),
            }  # fmt: skip
            for mode, result in results.items():
                m, c, ch = result.metrics, result.controls, result.chance
                g[mode] = {
                    "mrr": m["mrr"], "mpp": m["mpp"], "control_mrr": c["mrr"], "control_mpp": c["mpp"], "chance_mrr": ch["mrr"], "chance_mpp": ch["mpp"],
                    "config_hash": result.config_hash,
                    "per_concept": [{k: d[k] for k in ("concept", "n_sequences", "rank", "r_precision", "control_rank", "top_features")} | {"n_features": len(d["features"])} for d in result.details],
                }  # fmt: skip
            for mode in MODES:
                r = g[mode]
                print(f"  {generator:8s} {mode:8s} MRR {r['mrr']:.3f} (shuffled T {r['control_mrr']:.3f}, chance {r['chance_mrr']:.3f})  MPP {r['mpp']:.3f} "
                      f"(shuffled T {r['control_mpp']:.3f}, chance {r['chance_mpp']:.3f})  {g['n_concepts']} concepts, {g['n_sequences']} sequences", flush=True)  # fmt: skip
            print(f"  {generator}: {g['wall_s']} s", flush=True)
        report["models"].append(entry)
        del ctx, bundle
    report["wall_s"] = round(time.perf_counter() - t_start)
    report["sequence_calls"] = {g: {"reused": store.reused[g], "generated": store.generated[g]} for g in STORED_GENERATORS if g in generators}
    annotate(report, atlas.labels)
    (out / "retrieval_queries.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return render(report, out)


def annotate(report: dict, labels) -> None:
    """Record the atlas labels of every feature that tops some concept (the renderer names them)."""
    features = sorted({f for e in report["models"] for g in e["generators"].values() for mode in MODES for d in g[mode]["per_concept"] for f in d["top_features"]})
    report["feature_labels"] = {str(f): {"label": labels.get(f).label, "validated": labels.get(f).validated} for f in features if labels.get(f) is not None}


def shared_top_features(g: dict, k: int = 3) -> list[tuple[int, int]]:
    """(feature, number of concepts that have it in their top k), most shared first, for features in ≥ half the concepts' top k."""
    counts = Counter(f for d in g["per_concept"] for f in d["top_features"][:k])
    return [(f, n) for f, n in counts.most_common() if 2 * n >= len(g["per_concept"])]


def _f(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _short(entry: dict) -> str:
    return entry["subject"].split("/")[-1]


def _count(k: int, n: int) -> str:
    if n == 1:
        return "the one" if k else "not the one"
    return f"all {n}" if k == n else ("none" if k == 0 else f"{k} of {n}")


def conclusion(report: dict) -> str:
    """One sentence, derived from the numbers: what centering does to the synthetic generators and held-out texts."""
    synth = [(e, gen, g) for e in report["models"] for gen, g in e["generators"].items() if gen != "heldout"]
    held = {_short(e): e["generators"]["heldout"] for e in report["models"] if "heldout" in e["generators"]}
    if not synth:
        return "Only held-out texts were run, so this report says nothing about synthetic sequences."
    n = len(synth)
    up = sum(g["centered"]["mrr"] > g["plain"]["mrr"] for _, _, g in synth)
    beats = sum(g["centered"]["mrr"] > max(g["centered"]["chance_mrr"], g["centered"]["control_mrr"]) for _, _, g in synth)
    per_model = "; ".join(
        f"{_short(e)}: " + ", ".join(f"{gen} {g['plain']['mrr']:.3f} → {g['centered']['mrr']:.3f}" for gen, g in e["generators"].items() if gen != "heldout")
        for e in report["models"]
    )
    chance = sorted({round(g["centered"]["chance_mrr"], 3) for _, _, g in synth})
    sentence = (f"Centering raises MRR in {_count(up, n)} synthetic runs ({per_model}; chance {', '.join(f'{c:.3f}' for c in chance)}), "
                f"{_count(beats, n)} centered synthetic runs beat both chance and their centered shuffled-T control")  # fmt: skip
    if held:
        ratio = [(g["centered"]["mrr"] / held[_short(e)]["centered"]["mrr"], _short(e), gen) for e, gen, g in synth if held.get(_short(e), {}).get("centered", {}).get("mrr")]
        h = ", ".join(f"{who} {g['plain']['mrr']:.3f} → {g['centered']['mrr']:.3f}" for who, g in held.items())
        sentence += f", held-out texts go {h}"
        if ratio:
            best, who, gen = max(ratio)
            sentence += f", and the best centered synthetic run ({gen}, {who}) reaches {100 * best:.0f}% of that subject's centered held-out MRR"
        mpp = [g["centered"]["mpp"] for _, _, g in synth]
        held_mpp = [g["centered"]["mpp"] for g in held.values()]
        sentence += f" (centered MPP: synthetic {min(mpp):.3f}–{max(mpp):.3f}, held-out {min(held_mpp):.3f}–{max(held_mpp):.3f})"
    return sentence + "."


def to_markdown(report: dict) -> str:
    llm = report.get("generator_model")
    parts = [
        f"# Retrieval with held-out texts vs synthetic concept sequences ({report['benchmark']})",
        "",
        "Generated by `python scripts/compare_query_generators.py`. Procrustes fitted as in `scripts/measure_steering.py`",
        f"({report['train_texts']} uniform training texts of the built-in corpus); {report['heldout_texts']} held-out texts drawn with seed {report['seed']}.",
        "Every validated atlas feature whose label names a WordNet category is a query; a category's concept sequences",
        f"(up to {report['queries_per_concept']}) are pooled by the subject, translated into atlas space and averaged, and all atlas",
        "features are ranked by that score. MRR: 1 / rank of the first feature of the query's category; MPP: R-precision.",
        "Both are averaged over queries (one per validated feature). Shuffled T: T's columns permuted with the seed; chance: a random ranking.",
        "",
        "**Centered** (`center=True`, opt-in): before ranking, the mean over all concepts of the translated query vectors is",
        "subtracted from each concept's, so each concept is ranked against the others and a feature that every concept's",
        "sequences raise alike no longer tops every concept. The shuffled-T control is centered the same way; chance is unchanged.",
        "",
        f"**Conclusion** (derived from the table by the script): {conclusion(report)}",
        "",
        "Generators:",
        "",
        "- `heldout`: held-out corpus texts (WordNet glosses and examples) of the category — the benchmark's default.",
        "- `template`: one of a few neutral templates for the category's part of speech (e.g. “I saw a {w} yesterday.”,",
        "  “They {w} every morning.”) filled with a WordNet member lemma of the category, seeded.",
    ]
    if llm:
        parts += [
            f"- `llm`: one sentence per prompt written by **{llm}** (the packaged model: a 4-bit GGUF, de-quantised to float32); greedy,",
            f"  ≤ {report['llm_max_new_tokens']} new tokens, cut to the first sentence. Prompt (chat template): “{report['llm_prompt']}”,",
            "  with the category's readable name (e.g. “animals”) and one member lemma per prompt.",
        ]
    if report.get("sequences_file"):
        calls = report.get("sequence_calls", {})
        made = ", ".join(f"`{g}` {c['generated']} written, {c['reused']} read back" for g, c in calls.items())
        parts += ["", f"The synthetic sequences are stored per (generator, model, category, n, seed) in `{report['sequences_file']}` and reused on re-runs"
                  + (f" (one look-up per concept and retrieval run; in this run: {made})." if made else ".")]  # fmt: skip
    head = ["MRR", "MRR centered", "MPP", "MPP centered", "shuffled-T MRR", "shuffled-T MRR centered", "shuffled-T MPP", "shuffled-T MPP centered", "chance MRR", "chance MPP"]
    parts += ["", "| subject (block) | generator | " + " | ".join(head) + " | #concepts | #sequences |", "|---|---|" + "---|" * (len(head) + 2)]
    for entry in report["models"]:
        for i, (generator, g) in enumerate(entry["generators"].items()):
            who = f"{_short(entry)} ({entry['layer']})" if i == 0 else ""
            p, c = g["plain"], g["centered"]
            cells = [p["mrr"], c["mrr"], p["mpp"], c["mpp"], p["control_mrr"], c["control_mrr"], p["control_mpp"], c["control_mpp"], p["chance_mrr"], p["chance_mpp"]]
            parts.append(f"| {who} | {generator} | " + " | ".join(_f(v) for v in cells) + f" | {g['n_concepts']} | {g['n_sequences']} |")
    parts += ["", "## Rank of the first feature of each category", ""]
    for entry in report["models"]:
        gens = list(entry["generators"])
        concepts = [d["concept"] for d in entry["generators"][gens[0]]["plain"]["per_concept"]]
        parts += [f"{_short(entry)} (block {entry['layer']}); lower is better, 1 = first of all atlas features; c. = centered:", "",
                  "| concept (features) | " + " | ".join(f"{g} | {g} c." for g in gens) + " |", "|---|" + "---|" * (2 * len(gens))]  # fmt: skip
        for concept in concepts:
            cells, n_features = [], None
            for generator in gens:
                for mode in MODES:
                    row = next((d for d in entry["generators"][generator][mode]["per_concept"] if d["concept"] == concept), None)
                    cells.append("skipped" if row is None else str(row["rank"]))
                    n_features = n_features or (row and row["n_features"])
            parts.append(f"| {concept} ({n_features}) | " + " | ".join(cells) + " |")
        parts.append("")
    labels = report.get("feature_labels", {})
    shared = [(entry, generator, mode, shared_top_features(g[mode])) for entry in report["models"] for generator, g in entry["generators"].items() for mode in MODES]
    parts += ["## Features that top most concepts at once", "",
              "A feature in the top 3 of at least half the concepts scores high whatever the concept: the sequences move the",
              "translated score the same way for every category, so retrieval cannot tell the categories apart.", ""]  # fmt: skip
    for entry, generator, mode, features in shared:
        if features:
            n = len(entry["generators"][generator][mode]["per_concept"])
            named = "; ".join(f"{f} ({k}/{n}, “{labels.get(str(f), {}).get('label', '?')}”"
                              + (")" if labels.get(str(f), {}).get("validated") else ", not validated)") for f, k in features)  # fmt: skip
            parts.append(f"- {_short(entry)} · `{generator}` · {mode}: {named}")
    quiet = [f"{_short(e)} · `{gen}` · {mode}" for e, gen, mode, features in shared if not features]
    if quiet:
        parts.append(f"- none in: {', '.join(quiet)}")
    parts.append("")
    parts += ["Notes:", "",
              "- The shuffled-T control is one seeded permutation of T's columns, so one draw can land above chance (or above the fitted T).",
              "- `heldout` uses the category's texts among the held-out sample, which often holds fewer than the sequences asked for;",
              "  they are WordNet glosses and examples, the same kind of text the atlas features were labelled and validated on.",
              "- Centering needs ≥ 2 concepts (retrieval refuses it otherwise); the mean it subtracts includes the concept's own query.", ""]  # fmt: skip
    parts += ["## Example sequences", ""]
    for entry in report["models"][:1]:
        for generator, g in entry["generators"].items():
            for text in g["examples"]:
                parts.append(f"- `{generator}` · {entry['example_concept']}: “{text.replace(chr(10), ' ').replace('|', '/')}”")
    parts += ["", f"Wall time: {report['wall_s']} s on 2 shared CPU cores.", ""]
    return "\n".join(parts)


def render(report: dict, out: Path) -> int:
    text = to_markdown(report)
    (out / "RETRIEVAL_QUERIES.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
