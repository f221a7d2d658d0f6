"""`atlas-align steer export`: steering vectors from an alignment, for other tools (lm-eval's `steered` model)."""

from __future__ import annotations

import click

from atlas_align.cli.main import friendly_errors, revision_option


@click.group()
def steer() -> None:
    """Steering vectors from an alignment, for other tools."""


@steer.command("export")
@click.argument("artifact")
@click.option("--concept", required=True, help="Feature ids ('12;40'), a category ('noun.animal') or a label query ('animal').")
@click.option("--strength", type=float, required=True, help="Relative: λ = strength × the median token norm at the hooked layer (measured with the subject model); see --absolute.")
@click.option("--absolute", is_flag=True, help="λ = --strength itself (no subject model needed).")
@click.option("--subject", default=None, help="Subject model to measure the norm with (default: the model id the alignment records).")
@click.option("--out", type=click.Path(dir_okay=False), default="steer.pt", show_default=True, help="Output .pt file.")
@revision_option
@friendly_errors
def steer_export(artifact, concept, strength, absolute, subject, out, revision):
    """Write lm-eval's `steered` .pt file (hookpoint relative to base_model, action 'add').

    \b
    Example:
      atlas-align steer export runs/smollm2-l20 --concept noun.animal --strength 0.25 --out steer.pt
      lm-eval run --model steered --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct,steer_path=steer.pt --tasks ...
    """
    import torch

    from atlas_align.alignment.model import AtlasAlignment
    from atlas_align.harness.lm_eval import export_lm_eval_steering

    alignment = AtlasAlignment.from_pretrained(artifact, revision=revision)
    path = export_lm_eval_steering(alignment, concept, strength, out, absolute=absolute, subject=subject)
    vector = next(iter(torch.load(path, weights_only=True).values()))["steering_vector"]
    click.echo(f"Wrote {path} (hookpoint {alignment.config.subject.hookpoint}, λ={float(vector.norm()):.4g}); note lm-eval adds the vector without restoring the norm.")
