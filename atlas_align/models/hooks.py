"""Run a model forward only as far as one module: a hook captures the module's output and stops the pass.

The one forward-and-stop used by pooled extraction (``activations``) and per-token extraction
(``atlas.build``): layers after the hooked module never run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    return forward_to_many(model, [module], inputs, [name])[0]


def forward_to_many(model: nn.Module, modules: Sequence[nn.Module], inputs: Mapping[str, torch.Tensor], names: Sequence[str] = ()) -> list[torch.Tensor]:
    """The outputs of several modules from one forward pass, which stops once all of them have run.

    A layer sweep reads k layers for the price of a pass to the deepest one.
    """
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(slot: int):
        def hook(_module, _args, output):
            captured.setdefault(slot, output_tensor(output))
            if len(captured) == len(modules):
                raise _StopForward

        return hook

    for slot, module in enumerate(modules):
        handles.append(module.register_forward_hook(make_hook(slot)))
    try:
        if _accepts_use_cache(model):
            model(**inputs, use_cache=False)
        else:
            model(**inputs)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [names[i] if i < len(names) and names[i] else type(modules[i]).__name__ for i in range(len(modules)) if i not in captured]
    if missing:
        raise HookpointError(f"Hookpoint(s) {', '.join(map(repr, missing))} were never reached during the forward pass.")
    return [captured[i] for i in range(len(modules))]
