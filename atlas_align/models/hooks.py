"""Run a model forward only as far as one module: a hook captures the module's output and stops the pass.

The one forward-and-stop used by pooled extraction (``activations``) and per-token extraction
(``atlas.build``): layers after the hooked module never run.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from atlas_align.errors import HookpointError


class _StopForward(Exception):
    """Raised inside the hook to end the forward pass at the hooked module."""


def output_tensor(output: object) -> torch.Tensor:
    """Blocks return a Tensor (transformers 5) or a tuple whose first item is the hidden state."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise HookpointError(f"The hooked module returned {type(output).__name__}, not a tensor; hook another module.")


def _accepts_use_cache(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "use_cache", False))


def forward_to(model: nn.Module, module: nn.Module, inputs: Mapping[str, torch.Tensor], name: str = "") -> torch.Tensor:
    """The output of ``module`` when ``model`` runs on ``inputs``; the forward pass stops there (no KV cache)."""
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(output_tensor(output))
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        if _accepts_use_cache(model):
            model(**inputs, use_cache=False)
        else:
            model(**inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise HookpointError(f"Hookpoint {name or type(module).__name__!r} was never reached during the forward pass.")
    return captured[0]
