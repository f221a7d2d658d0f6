"""Max-pooled activations of any ``transformers`` model at one hookpoint.

The forward pass stops at the hooked module (a hook raises once it has the output), so layers
after it never run. Pooling takes the max over kept tokens only (:class:`PoolingConfig`): padding
and special tokens (BOS/CLS/SEP, also typed ones) are masked out, and for causal LMs the first
token — the attention sink, whose norm is ~100× the others' — is dropped too, since it would
otherwise dominate every max.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from atlas_align.errors import HookpointError, ShapeMismatchError
from atlas_align.models.hooks import forward_to, forward_to_many, output_tensor
from atlas_align.refs import PoolingConfig

Site = Literal["resid", "mlp"]
# Sub-module that holds the MLP output inside one block, per family (first match wins).
_MLP_NAMES = ("mlp", "output.dense", "feed_forward", "ffn")


@dataclass(frozen=True)
class Hookpoint:
    """A module inside ``model.base_model``, addressed by its path (lm-eval's convention)."""

    path: str
    layer: int | None = None
    site: Site = "resid"


def base_model(model: nn.Module) -> nn.Module:
    """The transformer trunk without task heads (``LlamaForCausalLM.model``, ``GPT2LMHeadModel.transformer``)."""
    return getattr(model, "base_model", model)


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Find the list of transformer blocks: the ModuleList whose length is the config's layer count."""
    trunk = base_model(model)
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    candidates = [(name, mod) for name, mod in trunk.named_modules() if isinstance(mod, nn.ModuleList) and len(mod) > 0]
    for name, mod in candidates:
        if n_layers is None or len(mod) == n_layers:
            return name, mod
    raise HookpointError(
        f"Could not find the transformer blocks of {type(model).__name__} (expected a ModuleList of "
        f"{n_layers} layers). Pass an explicit module path with --hookpoint, e.g. 'layers.3'."
    )


def layer_index(layer: int | float, n_layers: int) -> int:
    """Block index for ``layer``: an index (negative counts from the end) or a relative depth in [0, 1] given as a float.

    Layer L means the *output of block L* (0-based) — ``hidden_states[L + 1]`` in transformers terms.
    A relative depth d picks block round(d · (n − 1)), so 0.0 is the first block and 1.0 the last.
    """
    if isinstance(layer, float):
        if 0.0 <= layer <= 1.0:
            return round(layer * (n_layers - 1))
        if not layer.is_integer():
            raise HookpointError(f"A relative depth must lie in [0, 1], got {layer}; use an integer for a layer index.")
    index = int(layer)
    return index + n_layers if index < 0 else index


def resolve_hookpoint(model: nn.Module, layer: int | float | None = None, site: Site = "resid", path: str | None = None) -> Hookpoint:
    """Resolve a layer index (negative counts from the end), a relative depth (0.66) or a module path to a Hookpoint."""
    trunk = base_model(model)
    if path is not None:
        try:
            trunk.get_submodule(path)
        except AttributeError:
            names = [n for n, _ in trunk.named_modules() if n][:12]
            raise HookpointError(
                f"Module path {path!r} does not exist in {type(trunk).__name__}. Paths are relative to "
                f"model.base_model; some valid ones: {', '.join(names)} ..."
            ) from None
        return Hookpoint(path=path, layer=layer, site=site)
    if layer is None:
        raise HookpointError("Give either a layer index (--layer) or a module path (--hookpoint).")
    blocks_name, blocks = block_list(model)
    n = len(blocks)
    index = layer_index(layer, n)
    if not 0 <= index < n:
        raise HookpointError(f"Layer {layer} is out of range: {type(model).__name__} has {n} layers (0..{n - 1}).")
    block_path = f"{blocks_name}.{index}"
    if site == "resid":
        return Hookpoint(path=block_path, layer=index, site=site)
    block = blocks[index]
    for name in _MLP_NAMES:
        try:
            block.get_submodule(name)
        except AttributeError:
            continue
        return Hookpoint(path=f"{block_path}.{name}", layer=index, site=site)
    raise HookpointError(f"Block {block_path} has no MLP sub-module among {_MLP_NAMES}; pass --hookpoint explicitly.")


def hidden_size(model: nn.Module) -> int:
    config = model.config
    for key in ("hidden_size", "n_embd", "d_model"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ShapeMismatchError(f"Cannot tell the hidden size of {type(model).__name__} from its config.")


def is_causal_lm(model: nn.Module) -> bool:
    """A decoder-only LM (its first token becomes the attention sink)."""
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return False
    names = [type(model).__name__, *(getattr(config, "architectures", None) or [])]
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in names) or bool(getattr(config, "is_decoder", False))


def pooling_mask(
    attention_mask: torch.Tensor,
    special_mask: torch.Tensor,
    pooling: PoolingConfig,
    *,
    causal: bool,
    input_ids: torch.Tensor | None = None,
    special_ids: list[int] | tuple[int, ...] = (),
    norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which positions a text's max-pool reads: real tokens, minus specials, the sink, and norm outliers.

    A rule never removes a text's last kept token (a one-word text still pools to its word).
    """
    keep = attention_mask.to(torch.bool) & ~special_mask.to(torch.bool)
    if pooling.mask_typed_special and input_ids is not None and len(special_ids):
        keep &= ~torch.isin(input_ids, torch.tensor(list(special_ids), device=input_ids.device))
    drop = torch.zeros_like(keep)
    if pooling.exclude_first == "always" or (pooling.exclude_first == "auto" and causal):
        first = attention_mask.to(torch.bool).to(torch.int8).argmax(dim=1)  # first non-pad position (left or right padding)
        drop[torch.arange(len(first)), first] = True
    if pooling.outlier_ratio is not None and norms is not None:
        masked = norms.masked_fill(~keep, float("nan"))
        median = masked.nanmedian(dim=1, keepdim=True).values
        drop |= norms > pooling.outlier_ratio * median
    reduced = keep & ~drop
    lost = ~reduced.any(dim=1) & keep.any(dim=1)
    reduced[lost] = keep[lost]
    return reduced


def masked_max_pool(acts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over positions where ``mask`` is true; a row with no real token pools to zeros."""
    mask3 = mask.unsqueeze(-1).to(torch.bool)
    filled = acts.masked_fill(~mask3, float("-inf"))
    pooled = filled.amax(dim=1)
    empty = ~mask.any(dim=1)
    if empty.any():
        pooled[empty] = 0.0
    return pooled


class ActivationExtractor:
    """Pooled activations at one hookpoint, batched with length bucketing, truncated forward.

    ``token_transform`` maps per-token activations before pooling (an atlas passes its SAE's
    ``encode`` here, so SAE features are max-pooled exactly like raw subject activations).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        hookpoint: Hookpoint,
        *,
        batch_size: int = 16,
        max_length: int = 128,
        token_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        bucket_batches: int = 8,
        pooling: PoolingConfig | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.hookpoint = hookpoint
        self.batch_size = batch_size
        self.max_length = max_length
        self.token_transform = token_transform
        self.bucket_batches = bucket_batches
        self.pooling = pooling or PoolingConfig()
        self.causal = is_causal_lm(model)
        self.special_ids = tuple(getattr(tokenizer, "all_special_ids", ()) or ())
        if tokenizer.pad_token is None:  # GPT-2 style tokenizers ship without one
            tokenizer.pad_token = tokenizer.eos_token
        self.module = base_model(model).get_submodule(hookpoint.path)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    def _tokenize(self, texts: list[str]):
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_special_tokens_mask=True, return_tensors="pt")
        special = enc.pop("special_tokens_mask").to(torch.bool)
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return enc, special, inputs

    def _pool(self, acts: torch.Tensor, enc, special: torch.Tensor) -> torch.Tensor:
        norms = acts.float().norm(dim=-1).cpu() if self.pooling.outlier_ratio is not None else None
        mask = pooling_mask(
            enc["attention_mask"], special, self.pooling, causal=self.causal,
            input_ids=enc["input_ids"], special_ids=self.special_ids, norms=norms,
        )  # fmt: skip
        if self.token_transform is not None:
            acts = self.token_transform(acts.to(torch.float32))
        return masked_max_pool(acts.float(), mask.to(acts.device)).cpu()

    @torch.inference_mode()
    def _forward_batch(self, texts: list[str]) -> torch.Tensor:
        enc, special, inputs = self._tokenize(texts)
        return self._pool(forward_to(self.model, self.module, inputs, self.hookpoint.path), enc, special)

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        """Yield pooled activations (float32, CPU) for consecutive groups of texts, in input order."""
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="seq", desc="activations", disable=not progress)
        group: list[str] = []
        group_size = self.batch_size * self.bucket_batches
        for text in texts:
            group.append(text)
            if len(group) == group_size:
                yield self._pool_group(group)
                bar.update(len(group))
                group = []
        if group:
            yield self._pool_group(group)
            bar.update(len(group))
        bar.close()

    def _pool_group(self, group: list[str]) -> torch.Tensor:
        # Sort by length so each batch pads little; then restore the input order.
        order = sorted(range(len(group)), key=lambda i: len(group[i]))
        parts = [self._forward_batch([group[i] for i in order[s : s + self.batch_size]]) for s in range(0, len(order), self.batch_size)]
        pooled = torch.cat(parts)
        out = torch.empty_like(pooled)
        out[torch.tensor(order)] = pooled
        return out

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """Pooled activations for a (small) list of texts as one tensor (N, d)."""
        parts = list(self.pooled_batches(texts))
        return torch.cat(parts) if parts else torch.empty(0, 0)


class LayerSweepExtractor(ActivationExtractor):
    """Pooled activations at several hookpoints from one forward pass (stopped after the deepest one).

    ``pooled_batches`` yields (B, k, d) tensors, hookpoint j in ``[:, j]``; use :meth:`layer` for one of them.
    """

    def __init__(self, model: nn.Module, tokenizer, hookpoints: list[Hookpoint], **kwargs) -> None:
        if not hookpoints:
            raise HookpointError("A layer sweep needs at least one layer.")
        super().__init__(model, tokenizer, hookpoints[0], **kwargs)
        self.hookpoints = list(hookpoints)
        self.modules = [base_model(model).get_submodule(h.path) for h in self.hookpoints]

    @torch.inference_mode()
    def _forward_batch(self, texts: list[str]) -> torch.Tensor:
        enc, special, inputs = self._tokenize(texts)
        outputs = forward_to_many(self.model, self.modules, inputs, [h.path for h in self.hookpoints])
        return torch.stack([self._pool(acts, enc, special) for acts in outputs], dim=1)


__all__ = ["ActivationExtractor", "LayerSweepExtractor", "Hookpoint", "PoolingConfig", "base_model", "block_list", "hidden_size", "is_causal_lm", "masked_max_pool", "output_tensor", "pooling_mask", "resolve_hookpoint"]
