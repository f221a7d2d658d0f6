"""Provenance references and the one parser for model / atlas spec strings.

Bottom layer: every stage may import this; it imports only ``errors``.

Spec strings a user types (CLI options, ``AlignRequest``):

- atlas: ``builtin`` · a local atlas folder · a Hub repo ``org/name`` · a raw model space
  ``model:NAME@LAYER`` or ``model:NAME@MODULE.PATH`` (e.g. ``model:minilm@3`` or
  ``model:minilm@layers.3``); a revision comes separately (``--atlas-revision``).
- subject: an offline asset name (``smollm2``), a local folder or a Hub repo id, with the layer
  (or module path) and revision given separately.

:class:`AtlasRef` / :class:`SubjectRef` are what an artifact records; ``AtlasSpec.from_ref``
turns a recorded ref back into something loadable, revision included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from atlas_align.errors import ConfigError

BUILTIN = "builtin"  # the default built-in atlas
# The built-in atlases by the id an artifact records: the first default (1,536 features) and the stronger one
# that is the default since issue 14 (4,096 features, 340 validated). Names → recorded id; old artifacts keep theirs.
BUILTIN_1536 = "builtin:minilm-l3-wordnet"
BUILTIN_4K = "builtin:minilm-l3-wordnet-4k"
DEFAULT_BUILTIN = BUILTIN_4K
BUILTIN_NAMES = {BUILTIN: DEFAULT_BUILTIN, BUILTIN_1536: BUILTIN_1536, "builtin-1536": BUILTIN_1536, BUILTIN_4K: BUILTIN_4K, "builtin-4k": BUILTIN_4K}
RAW_PREFIX = "model:"


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("atlas-align")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+local"


def looks_like_repo_id(spec: str) -> bool:
    """``org/name`` that is not a local path."""
    return spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not Path(spec).expanduser().exists()


class SubjectRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str
    revision: str | None = None
    hookpoint: str = Field(description="module path relative to model.base_model, e.g. 'layers.20'")
    layer: int | None = None
    site: Literal["resid", "mlp"] = "resid"
    n_layers: int | None = Field(None, description="blocks in the subject model, so layer/(n_layers-1) is the relative depth")

    @property
    def depth(self) -> float | None:
        """Relative depth of the layer in [0, 1] (None when unknown)."""
        if self.layer is None or not self.n_layers:
            return None
        return self.layer / max(self.n_layers - 1, 1)


class AtlasRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    atlas_id: str = Field(description="repo id or name of the atlas (or 'model:<id>@<hookpoint>' for a raw model space)")
    revision: str | None = None
    model_id: str | None = None
    hookpoint: str | None = None
    kind: Literal["sae", "raw"] = "sae"


class CorpusRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    n_samples: int
    window_words: int
    heldout_fraction: float
    split_salt: str
    seed: int = 0
    # Artifacts written before uniform sampling existed took the first N windows.
    sampling: Literal["uniform", "sequential"] = "sequential"
    sample_seed: int = 0
    text_unit: Literal["paragraph", "line", "window"] = "paragraph"


class PoolingConfig(BaseModel):
    """How one text's per-token activations become one vector (max over the kept tokens); recorded in artifacts.

    Causal LMs turn the first token of a text into an *attention sink* whose hidden state is huge
    (SmolLM2 layer 20: norm ~23,700 against a median of ~237), so a plain max over tokens is
    dominated by it. Special tokens the tokenizer adds (BOS/CLS/SEP) and padding are always masked.
    The default (first token of causal LMs + tokens above 5× the median norm) was chosen by
    ``scripts/measure_pooling.py`` on SmolLM2, Gemma-3-270M and Qwen2.5 (``docs/pooling.md``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    exclude_first: Literal["auto", "always", "never"] = Field(
        "auto", description="drop the first token of each text: 'auto' = for causal LMs only (where it is the attention sink)"
    )
    outlier_ratio: float | None = Field(
        5.0, gt=1.0, description="also drop tokens whose norm exceeds this multiple of the text's median token norm (massive activations anywhere)"
    )
    mask_typed_special: bool = Field(True, description="also mask special tokens typed inside the text (e.g. a literal '<|im_start|>')")

    @classmethod
    def legacy(cls) -> PoolingConfig:
        """What artifacts written before this option existed used: only added special tokens masked."""
        return cls(exclude_first="never", outlier_ratio=None, mask_typed_special=False)


class AtlasSpec(BaseModel):
    """A parsed atlas spec: what to load, at which revision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["builtin", "folder", "repo", "raw"]
    id: str = Field(description="'builtin' (or a named built-in atlas id), a folder path, a repo id, or (raw) the model name")
    revision: str | None = None
    layer: int | None = Field(None, description="raw spaces: block index")
    hookpoint: str | None = Field(None, description="raw spaces: module path, e.g. 'layers.4'")

    @classmethod
    def parse(cls, spec: str | Path, revision: str | None = None) -> AtlasSpec:
        text = str(spec).strip()
        if not text:
            raise ConfigError("The atlas spec is empty: use 'builtin', a folder, 'org/name' or 'model:NAME@LAYER'.")
        if text in BUILTIN_NAMES:  # 'builtin' (the default), a recorded built-in id, or a short alias
            return cls(kind="builtin", id=BUILTIN_NAMES[text], revision=revision)
        if text.startswith(BUILTIN + ":") or text.startswith(BUILTIN + "-"):
            known = ", ".join(repr(n) for n in BUILTIN_NAMES)
            raise ConfigError(f"There is no built-in atlas {text!r}: the built-in ones are {known}.")
        if text.startswith(RAW_PREFIX):
            name, _, selector = text[len(RAW_PREFIX) :].rpartition("@")
            if not name or not selector:
                raise ConfigError(f"Atlas spec {text!r} must look like 'model:NAME@LAYER' or 'model:NAME@MODULE.PATH', e.g. 'model:minilm@3'.")
            if selector.lstrip("-").isdigit():
                return cls(kind="raw", id=name, revision=revision, layer=int(selector))
            return cls(kind="raw", id=name, revision=revision, hookpoint=selector)
        if Path(text).expanduser().is_dir():
            return cls(kind="folder", id=str(Path(text).expanduser()), revision=revision)
        if looks_like_repo_id(text):
            return cls(kind="repo", id=text, revision=revision)
        raise ConfigError(
            f"Atlas {text!r} is neither 'builtin', an existing folder, a Hub repo id ('org/name') nor a raw "
            f"model space ('model:NAME@LAYER')."
        )

    @classmethod
    def from_ref(cls, ref: AtlasRef) -> AtlasSpec:
        """The spec that loads the atlas an artifact recorded, at the recorded revision."""
        if ref.kind == "raw" and ref.model_id and ref.hookpoint:
            return cls(kind="raw", id=ref.model_id, revision=ref.revision, hookpoint=ref.hookpoint)
        return cls.parse(ref.atlas_id, ref.revision)

    def __str__(self) -> str:
        if self.kind == "raw":
            return f"{RAW_PREFIX}{self.id}@{self.hookpoint if self.hookpoint is not None else self.layer}"
        return self.id


def raw_atlas_id(model_id: str, hookpoint: str) -> str:
    """The atlas id recorded for a raw model space; ``AtlasSpec.parse`` reads it back."""
    return f"{RAW_PREFIX}{model_id}@{hookpoint}"


class SubjectSpec(BaseModel):
    """A subject model and where to read it: layer index or module path, resid or MLP output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="offline asset name (e.g. 'smollm2'), a local folder, or a Hub repo id")
    revision: str | None = None
    layer: int | float | None = Field(None, description="block index, negative from the end, or a relative depth in [0, 1] (a float)")
    hookpoint: str | None = None
    site: Literal["resid", "mlp"] = "resid"

    @classmethod
    def from_ref(cls, ref: SubjectRef) -> SubjectSpec:
        return cls(model=ref.model_id, revision=ref.revision, layer=ref.layer, hookpoint=ref.hookpoint, site=ref.site)
