"""`atlas-align demo`: the whole chain offline on real pretrained models, printed step by step.

The workflow imports torch and the models inside :func:`run_demo`, so registering the command costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from atlas_align.cli.main import friendly_errors

if TYPE_CHECKING:  # pragma: no cover
    from atlas_align.alignment.model import AtlasAlignment

DEMO_SUBJECT = "smollm2"
DEMO_LAYER = 20
DEMO_ATLAS = "builtin"
NEUTRAL_PROMPT = "Here is a short story about my weekend:"
# Relative strength (× the median token norm at the layer, ~250 for SmolLM2 layer 20): λ ≈ 64 turns the text without breaking it.
STEER_STRENGTH = 0.25


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="atlas-align-demo", show_default=True, help="Where the demo writes its artifact.")
@click.option("--samples", type=int, default=2000, show_default=True, help="Shared training texts.")
@friendly_errors
def demo(out, samples):
    """Run the whole chain offline on real pretrained models: align, save, reload, search, explain, steer.

    \b
    Example:
      atlas-align demo --out atlas-align-demo
    """
    run_demo(Path(out), samples=samples, echo=click.echo)


def run_demo(out: Path, *, samples: int = 2000, echo: Callable[[str], None] = print) -> AtlasAlignment:
    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.alignment.pipeline import AlignRequest, load_atlas_space, load_subject, run_alignment
    from atlas_align.corpus.sources import CorpusConfig

    start = time.perf_counter()
    echo("atlas-align demo — real pretrained models, offline, CPU")
    echo(f"[1/6] loading subject model {DEMO_SUBJECT} (first run de-quantises and caches it)…")
    subject = load_subject(DEMO_SUBJECT)
    model, tokenizer, model_id = subject
    echo(f"      {model_id}: {type(model).__name__}, {model.config.num_hidden_layers} layers, d={model.config.hidden_size}")
    echo("[2/6] loading the Concept Atlas…")
    atlas = load_atlas_space(DEMO_ATLAS, batch_size=16, max_length=128)
    echo(f"      atlas {atlas.ref.atlas_id} ({atlas.ref.model_id} at {atlas.ref.hookpoint}), {atlas.width} features, {len(atlas.labels)} labelled")
    echo(f"[3/6] aligning layer {DEMO_LAYER} of the subject to the atlas on {samples} shared WordNet texts (one streaming pass)…")
    req = AlignRequest(subject=DEMO_SUBJECT, layer=DEMO_LAYER, atlas=DEMO_ATLAS, corpus=CorpusConfig(), samples=samples)
    result = run_alignment(req, subject_bundle=subject, atlas_space=atlas)
    alignment = result.alignment
    rep = result.report
    echo(f"      fitted T {tuple(alignment.T.shape)} by {alignment.config.method} in {result.seconds:.0f}s")
    if rep is not None:
        echo(f"      held-out ({rep.n} texts): top-1 match {rep.top1:.3f}, MRR {rep.mrr:.3f}  |  shuffled-pairs control: top-1 {rep.control_top1:.3f}, MRR {rep.control_mrr:.3f}  |  chance {rep.chance_top1:.4f}")
    echo(f"[4/6] saving the artifact to {out} and loading it back…")
    alignment.save_pretrained(out)
    alignment = AtlasAlignment.from_pretrained(out)
    echo(f"      {sorted(p.name for p in out.iterdir())}")
    _search_and_explain(alignment, subject, atlas, echo)
    _steer(alignment, model, tokenizer, echo)
    echo(f"done in {time.perf_counter() - start:.0f}s. Artifact: {out.resolve()}")
    echo(f"next: atlas-align search {out} animal   |   AtlasAlignment.from_pretrained('{out}')")
    return alignment


def _search_and_explain(alignment: AtlasAlignment, subject, atlas, echo) -> None:
    echo("[5/6] search and explain")
    if len(alignment.labels):
        res = alignment.search("animal", top_k=5)
        for feat, _ in res.atlas_features[:3]:
            echo(f"      atlas feature #{feat.feature}: {feat.label}{f' (validated, AUROC {feat.score:.2f})' if feat.validated and feat.score else ''}")
        echo(f"      top subject neurons for 'animal': {', '.join(f'{i} ({s:+.2f})' for i, s in res.subject_features[:5])}")
    else:
        echo("      (raw atlas space has no labels: search by label needs the SAE atlas)")
    import torch

    from atlas_align.corpus.sources import CorpusConfig, iter_samples
    from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint

    model, tokenizer, _ = subject
    extractor = ActivationExtractor(model, tokenizer, resolve_hookpoint(model, path=alignment.config.subject.hookpoint), pooling=alignment.config.pooling)
    sample = next(s for s in iter_samples(CorpusConfig(), "heldout") if s.category == "noun.animal")
    estimated = alignment.translate_to_atlas(extractor.pooled([sample.text]))[0]
    truth = torch.cat(list(atlas.pooled_batches([sample.text])))[0]
    z_est = (estimated - estimated.mean()) / estimated.std()
    top = z_est.topk(5).indices.tolist()
    hit = float((truth[top] > 0).float().mean())
    echo(f"      explain: {sample.text[:70]!r}")
    echo(f"        top-5 translated atlas features (z-score of the estimate; true SAE activation); {hit:.0%} truly fire:")
    for f in top:
        label = alignment.labels.get(f)
        echo(f"        atlas #{f:<5} est z={z_est[f]:+.1f}  true {truth[f]:.2f}  {label.label if label else ''}")


def _steer(alignment: AtlasAlignment, model, tokenizer, echo) -> None:
    echo(f"[6/6] steering generation toward a concept (norm-preserving, at the aligned layer, strength {STEER_STRENGTH:g} × the median token norm)")
    concepts = ["plants", "food", "animal"] if len(alignment.labels) else [0]
    inputs = tokenizer([NEUTRAL_PROMPT], return_tensors="pt")
    kwargs = dict(max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    base = model.generate(**inputs, **kwargs)
    echo(f"      prompt: {NEUTRAL_PROMPT!r}")
    echo(f"      unsteered      : {tokenizer.decode(base[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True)!r}")
    for concept in concepts:
        with alignment.steer(model, concept, strength=STEER_STRENGTH) as steering:
            out = model.generate(**inputs, **kwargs)
        echo(f"      {f'{concept} λ={steering.coefficient:.0f}':<15}: {tokenizer.decode(out[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True)!r}")
