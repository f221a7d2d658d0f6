"""Steering with a forward hook: a' = (a + λs)·‖a‖/‖a + λs‖ (direction changes, norm kept).

``strength`` has one meaning everywhere (``AtlasAlignment.steer``, the steering benchmark,
``atlas-align steer export``, lm-eval's ``atlas-steered`` model): it is *relative*, λ = strength ×
the median per-token activation norm at the hooked layer (first position excluded — it is an
attention sink with a norm 10–100× the rest). ``absolute=True`` makes λ = strength instead.
See :func:`steer` for where the median is measured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from atlas_align.errors import ConfigError, ShapeMismatchError
from atlas_align.models.activations import base_model, output_tensor

# Texts on which a fixed unit is measured when there is no input to measure it on (lm-eval, export).
REFERENCE_PROMPTS = (
    "Here is a short story about my weekend:",
    "Let me tell you what I think about",
    "The most interesting thing I saw today was",
    "Write one sentence about anything.",
    "Yesterday afternoon, we",
    "My favourite thing in the world is",
    "Here is a short description:",
    "Once upon a time,",
)


def norm_preserving_add(acts: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """Add λ·s to every position's activation vector, then rescale to the original norm."""
    steered = acts + strength * direction
    scale = acts.norm(dim=-1, keepdim=True) / steered.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return steered * scale


def _median(norms: torch.Tensor) -> float:
    if norms.numel() == 0:
        raise ConfigError("The input is too short to measure activation norms (one token); give a longer prompt or absolute=True.")
    return float(norms.double().median())


def token_norms(acts: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token L2 norms of (B, T, d) activations: real tokens only, each row's first real token excluded."""
    norms = acts.detach().float().norm(dim=-1)
    if attention_mask is None or attention_mask.shape != norms.shape:
        return norms[:, 1:].reshape(-1)
    keep = attention_mask.to(norms.device).bool().clone()
    first = keep.int().argmax(dim=1)
    keep[torch.arange(keep.shape[0], device=keep.device), first] = False
    return norms[keep]


@torch.inference_mode()
def median_token_norm(model: nn.Module, tokenizer, hookpoint: str, texts: Sequence[str] = REFERENCE_PROMPTS) -> float:
    """The unit of a relative strength: the median per-token norm at ``hookpoint`` over ``texts``.

    Each text is run alone (no padding); the first position of each is excluded.
    """
    norms: list[torch.Tensor] = []
    module = base_model(model).get_submodule(hookpoint)
    handle = module.register_forward_hook(lambda _m, _a, out: norms.append(token_norms(output_tensor(out)[:1])))
    device = next(model.parameters()).device
    try:
        for text in texts:
            enc = tokenizer(text, return_tensors="pt")
            model(**{k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")})
    finally:
        handle.remove()
    return _median(torch.cat(norms) if norms else torch.empty(0))


@dataclass
class Steering:
    """What a :func:`steer` block adds: λ·direction with λ = strength × unit (unit 1.0 when absolute)."""

    direction: torch.Tensor
    strength: float
    absolute: bool = False
    unit: float | None = None  # relative: measured on the first forward inside the block unless given

    @property
    def coefficient(self) -> float | None:
        """λ, the norm of the added vector (``direction`` is a unit vector); None before it is known."""
        if self.absolute:
            return self.strength
        return None if self.unit is None else self.strength * self.unit


@contextmanager
def steer(
    model: nn.Module, hookpoint: str, direction: torch.Tensor, strength: float, *, absolute: bool = False, unit: float | None = None
) -> Iterator[Steering]:
    """Within the block, every forward (and so ``generate``) is steered at ``hookpoint``.

    Each token's activation a becomes (a + λs)·‖a‖/‖a + λs‖ for the unit direction s, with

    * λ = ``strength`` × the median per-token norm at ``hookpoint`` (the default, *relative*
      strength; typical useful values 0.1–0.5). The median is ``unit`` when given (e.g.
      :func:`median_token_norm` on reference texts, as the steering benchmark and lm-eval do),
      otherwise it is measured once on the first forward pass inside the block — the prompt, when
      the block wraps ``generate`` — over real tokens (``attention_mask``), each sequence's first
      token excluded, and kept for the rest of the block;
    * λ = ``strength`` when ``absolute=True``.

    Yields a :class:`Steering` whose ``coefficient`` is λ. ``hookpoint`` is a module path relative
    to ``model.base_model``. The hooks are always removed on exit, even when the body raises.
    """
    module = base_model(model).get_submodule(hookpoint)
    width = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None)
    if width is not None and direction.shape[-1] != width:
        raise ShapeMismatchError(
            f"The steering direction has {direction.shape[-1]} dims but {type(model).__name__} has hidden size {width}; "
            f"this alignment was fitted for another model."
        )
    state = Steering(direction=direction, strength=float(strength), absolute=absolute, unit=None if absolute else unit)
    seen_mask: list[torch.Tensor | None] = []

    def remember_mask(_module, args, kwargs):
        if not seen_mask:
            seen_mask.append(kwargs.get("attention_mask"))

    def hook(_module, _args, output):
        acts = output_tensor(output)
        if state.coefficient is None:  # relative strength, first forward: measure the unit on this input
            state.unit = _median(token_norms(acts, seen_mask[0] if seen_mask else None))
        steered = norm_preserving_add(acts, direction.to(acts.device, acts.dtype), state.coefficient)
        return steered if isinstance(output, torch.Tensor) else (steered, *output[1:])

    handles = [module.register_forward_hook(hook)]
    if state.coefficient is None:
        handles.append(model.register_forward_pre_hook(remember_mask, with_kwargs=True))
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
