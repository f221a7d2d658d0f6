"""Load a subject model by name: an offline asset alias, a local folder or a Hub repo id."""

from __future__ import annotations

import torch


def load_subject(name: str, dtype: str = "float32"):
    """(model, tokenizer, canonical model id) for ``name``; the model is in eval mode."""
    from atlas_align.models.assets import canonical_model_id, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(name, dtype=getattr(torch, dtype))
    return model, tokenizer, canonical_model_id(name)
