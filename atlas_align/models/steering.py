"""Steering with a forward hook: a' = (a + λs)·‖a‖/‖a + λs‖ (direction changes, norm kept)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from atlas_align.errors import ShapeMismatchError
from atlas_align.models.activations import base_model


def norm_preserving_add(acts: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """Add λ·s to every position's activation vector, then rescale to the original norm."""
    steered = acts + strength * direction
    scale = acts.norm(dim=-1, keepdim=True) / steered.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return steered * scale


@contextmanager
def steer(model: nn.Module, hookpoint: str, direction: torch.Tensor, strength: float) -> Iterator[None]:
    """Within the block, every forward (and so ``generate``) is steered at ``hookpoint``.

    ``hookpoint`` is a module path relative to ``model.base_model``. The hook is always removed
    on exit, even when the body raises.
    """
    module = base_model(model).get_submodule(hookpoint)
    width = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None)
    if width is not None and direction.shape[-1] != width:
        raise ShapeMismatchError(
            f"The steering direction has {direction.shape[-1]} dims but {type(model).__name__} has hidden size {width}; "
            f"this alignment was fitted for another model."
        )

    def hook(_module, _args, output):
        if isinstance(output, torch.Tensor):
            return norm_preserving_add(output, direction.to(output.device, output.dtype), strength)
        head = norm_preserving_add(output[0], direction.to(output[0].device, output[0].dtype), strength)
        return (head, *output[1:])

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
