"""A Concept Atlas: a foundation model + one hookpoint + a sae-lens SAE + a label per SAE feature.

Atlas activations are the SAE's feature activations, max-pooled over each text's real tokens
(the paper's d_c-dimensional atlas space). The SAE is always a sae-lens ``SAE``: loaded with
``SAE.load_from_disk`` or ``SAE.from_pretrained`` and applied with ``sae.encode``.

An atlas folder (or Hub repo) holds::

    atlas.json      AtlasConfig: model, hookpoint, SAE source, corpus, training summary
    sae/            the SAE in sae-lens' own format (cfg.json + sae_weights.safetensors)
    labels.jsonl    one FeatureLabel per line
    README.md       the card
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.atlas.labels import LABELS_FILENAME, FeatureLabels
from atlas_align.errors import ArtifactNotFound, ConfigError, IntegrityError, ModelLoadError, ShapeMismatchError
from atlas_align.models.activations import ActivationExtractor, Hookpoint, hidden_size, resolve_hookpoint
from atlas_align.refs import BUILTIN, BUILTIN_4K, BUILTIN_1536, BUILTIN_NAMES, DEFAULT_BUILTIN, AtlasRef, AtlasSpec, PoolingConfig

FORMAT_VERSION = 1
ATLAS_CONFIG_FILENAME = "atlas.json"
SAE_DIRNAME = "sae"
CARD_FILENAME = "README.md"
BUILTIN_DIRNAME = "default_atlas"  # the first default atlas (1,536 features); the folder keeps its name
BUILTIN_ATLAS_ID = BUILTIN_1536  # Atlas.load("builtin:minilm-l3-wordnet") / "builtin-1536"
STRONG_ATLAS_ID = BUILTIN_4K  # the stronger built-in atlas (issue 14): Atlas.load("builtin-4k")
STRONG_DIRNAME = "atlas_4k"
DEFAULT_ATLAS_ID = DEFAULT_BUILTIN  # the id the default atlas ('builtin') records
# Recorded built-in atlas id → its package data folder.
BUILTIN_ATLASES = {BUILTIN_ATLAS_ID: BUILTIN_DIRNAME, STRONG_ATLAS_ID: STRONG_DIRNAME}
ATLAS_POOLING = PoolingConfig(exclude_first="auto", outlier_ratio=None)


class SaeSource(BaseModel):
    """Where the SAE came from: trained by atlas-align, or a sae-lens release."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["trained", "sae_lens"]
    architecture: str
    release: str | None = None
    sae_id: str | None = None
    neuronpedia_id: str | None = None


class AtlasCorpus(BaseModel):
    """The texts the SAE was trained and labelled on."""

    model_config = ConfigDict(extra="forbid")

    source: str
    n_train_texts: int
    n_train_tokens: int
    n_heldout_texts: int
    window_words: int
    heldout_fraction: float
    split_salt: str
    seed: int


class TrainingSummary(BaseModel):
    """How well the SAE fits (held-out tokens) and how many of its features are usable."""

    model_config = ConfigDict(extra="forbid")

    architecture: str
    k: int | None = None
    steps: int
    batch_tokens: int
    lr: float
    l0: float = Field(description="mean active features per held-out token")
    explained_variance: float = Field(description="1 - SSE / total variance on held-out tokens")
    dead_features: int = Field(description="features that never fire on held-out texts")
    dense_features: int = Field(description="features that fire on more than half of held-out texts")
    validated_features: int
    validation_auroc: float


class AtlasConfig(BaseModel):
    """atlas.json: everything needed to use, check and rebuild the atlas."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    kind: Literal["atlas-align/atlas"] = "atlas-align/atlas"
    name: str = "local"
    model_id: str
    model_revision: str | None = None
    hookpoint: str | None = Field(None, description="module path relative to model.base_model; None = resolve from layer")
    layer: int | None = None
    site: Literal["resid", "mlp"] = "resid"
    sae: SaeSource
    d_in: int = Field(gt=0)
    width: int = Field(gt=0)
    corpus: AtlasCorpus | None = None
    training: TrainingSummary | None = None
    build: dict[str, Any] | None = Field(None, description="the AtlasBuildConfig that rebuilds this atlas bit for bit")

    def __init__(self, **data: Any) -> None:
        build = data.get("build")
        if isinstance(build, BaseModel):  # an AtlasBuildConfig
            data["build"] = build.model_dump(mode="json")
        super().__init__(**data)


class AtlasSpace:
    """An atlas as an :class:`~atlas_align.atlas.spaces.ActivationSpace`: pooled SAE features per text."""

    def __init__(self, atlas: Atlas, extractor: ActivationExtractor) -> None:
        self.atlas = atlas
        self.extractor = extractor
        self.width = atlas.width
        self.ref = atlas.ref
        self.labels = atlas.labels

    def pooled_batches(self, texts: Iterable[str], progress: bool = False, total: int | None = None) -> Iterator[torch.Tensor]:
        return self.extractor.pooled_batches(texts, progress=progress, total=total)


class Atlas:
    """A labelled SAE on one hookpoint of a foundation model.

    The model loads lazily (``model_id`` through :mod:`atlas_align.models.assets`), or is handed
    in with :meth:`bind` / the ``model=`` arguments (tests use tiny random models this way).
    """

    def __init__(self, sae, config: AtlasConfig, labels: FeatureLabels | None = None, *, atlas_id: str | None = None, revision: str | None = None, model=None, tokenizer=None) -> None:
        if sae.cfg.d_sae != config.width or sae.cfg.d_in != config.d_in:
            raise ShapeMismatchError(
                f"The SAE is {sae.cfg.d_in}→{sae.cfg.d_sae} but atlas.json says {config.d_in}→{config.width}; the atlas is inconsistent."
            )
        self.sae = sae.eval()
        self.config = config
        self.labels = labels if labels is not None else FeatureLabels()
        self.atlas_id = atlas_id or config.name
        self.revision = revision
        self._model = None
        self._tokenizer = None
        self._hookpoint: Hookpoint | None = None
        if model is not None:
            self.bind(model, tokenizer)

    # --- identity -----------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.config.width

    @property
    def ref(self) -> AtlasRef:
        hookpoint = self._hookpoint.path if self._hookpoint is not None else self.config.hookpoint
        return AtlasRef(atlas_id=self.atlas_id, revision=self.revision, model_id=self.config.model_id, hookpoint=hookpoint, kind="sae")

    def __repr__(self) -> str:
        c = self.config
        return f"Atlas({self.atlas_id!r}: {c.model_id}@{c.hookpoint or f'layer {c.layer}'}, {c.sae.architecture} SAE {c.d_in}→{c.width}, {len(self.labels.validated())} validated labels)"

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, tokenizer, sae, *, model_id: str, layer: int | None = None, hookpoint: str | None = None, labels: FeatureLabels | None = None, name: str = "local") -> Atlas:
        """An atlas around an already-loaded model and a sae-lens SAE (e.g. a tiny test model)."""
        hook = resolve_hookpoint(model, layer, "resid", hookpoint)
        config = AtlasConfig(
            name=name, model_id=model_id, hookpoint=hook.path, layer=hook.layer, sae=SaeSource(kind="trained", architecture=sae.cfg.architecture()),
            d_in=sae.cfg.d_in, width=sae.cfg.d_sae,
        )
        return cls(sae, config, labels, atlas_id=name, model=model, tokenizer=tokenizer)

    @classmethod
    def from_sae_lens(cls, release: str, sae_id: str, labels: FeatureLabels | str | Path | None = None, *, model_id: str | None = None, model=None, tokenizer=None, device: str = "cpu") -> Atlas:
        """An atlas from a pretrained sae-lens SAE (e.g. Gemma Scope); needs network on first use.

        ``labels`` is a :class:`FeatureLabels` or the path of a Neuronpedia explanations export.
        The hookpoint comes from the SAE's metadata (``hf_hook_name``, else the layer of a
        ``blocks.L.hook_resid_post`` name) and is checked against the model when it loads.
        """
        from sae_lens import SAE

        try:
            sae = SAE.from_pretrained(release, sae_id, device=device)
        except Exception as exc:  # sae-lens raises many types (HTTP, offline, missing yaml entry)
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
            hint = (
                "HF_HUB_OFFLINE is set: pretrained SAEs cannot be downloaded. Unset it while online, or build a local atlas "
                "with `atlas-align atlas build`."
                if offline
                else "Check the release and SAE id (sae_lens.loading.pretrained_saes_directory lists them) and your network."
            )
            raise ArtifactNotFound(f"Could not load sae-lens SAE {release!r} / {sae_id!r} ({type(exc).__name__}: {exc}). {hint}") from None
        meta = sae.cfg.metadata
        hf_hook = meta.get("hf_hook_name")
        tl_hook = meta.get("hook_name") or ""
        match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", tl_hook)
        layer = int(match.group(1)) if match else meta.get("hook_layer")
        hookpoint = _strip_base_prefix(hf_hook) if hf_hook else None
        if hookpoint is None and layer is None:
            raise ConfigError(f"Cannot tell which layer SAE {release}/{sae_id} reads (hook {tl_hook!r}); build the Atlas with from_model(..., hookpoint=...).")
        if isinstance(labels, (str, Path)):
            labels = FeatureLabels.from_neuronpedia(labels)
        config = AtlasConfig(
            name=f"{release}/{sae_id}",
            model_id=model_id or meta.get("model_name") or "unknown",
            hookpoint=hookpoint,
            layer=layer,
            sae=SaeSource(kind="sae_lens", architecture=sae.cfg.architecture(), release=release, sae_id=sae_id, neuronpedia_id=meta.get("neuronpedia_id")),
            d_in=sae.cfg.d_in,
            width=sae.cfg.d_sae,
        )
        return cls(sae, config, labels, atlas_id=config.name, model=model, tokenizer=tokenizer)

    @classmethod
    def load(cls, spec: str | Path | AtlasSpec = BUILTIN, *, revision: str | None = None, model=None, tokenizer=None) -> Atlas:
        """Load ``"builtin"`` (the default atlas shipped in the package; ``"builtin-4k"`` is the stronger shipped one),
        a local atlas folder, or a Hub repo id (at ``revision``)."""
        spec = spec if isinstance(spec, AtlasSpec) else AtlasSpec.parse(spec, revision)
        if spec.kind == "builtin":
            return cls.from_folder(builtin_atlas_dir(spec.id), atlas_id=spec.id, model=model, tokenizer=tokenizer)
        if spec.kind == "folder":
            return cls.from_folder(spec.id, atlas_id=spec.id, model=model, tokenizer=tokenizer)
        if spec.kind == "repo":
            from atlas_align.downloads import download_atlas

            folder = download_atlas(spec.id, spec.revision)
            return cls.from_folder(folder, atlas_id=spec.id, revision=spec.revision, model=model, tokenizer=tokenizer)
        raise ConfigError(f"{spec} is a raw model space, not a labelled atlas: use atlas_align.atlas.spaces.load_atlas_space.")

    @classmethod
    def from_folder(cls, folder: str | Path, *, atlas_id: str | None = None, revision: str | None = None, model=None, tokenizer=None) -> Atlas:
        from sae_lens import SAE

        folder = Path(folder)
        config = read_atlas_config(folder / ATLAS_CONFIG_FILENAME)
        sae_dir = folder / SAE_DIRNAME
        if not (sae_dir / "cfg.json").is_file():
            raise IntegrityError(f"{folder} has no {SAE_DIRNAME}/cfg.json: not a complete atlas folder.")
        try:
            sae = SAE.load_from_disk(sae_dir, device="cpu")
        except Exception as exc:  # sae-lens raises on a corrupt or foreign folder
            raise IntegrityError(f"sae-lens could not load the SAE in {sae_dir}: {exc}") from None
        labels_path = folder / LABELS_FILENAME
        labels = FeatureLabels.load(labels_path) if labels_path.is_file() else FeatureLabels()
        return cls(sae, config, labels, atlas_id=atlas_id or config.name, revision=revision, model=model, tokenizer=tokenizer)

    # --- the model ------------------------------------------------------------------------------
    def bind(self, model, tokenizer) -> Atlas:
        """Use an already-loaded model (its hidden size must match the SAE's input)."""
        if tokenizer is None:
            raise ConfigError("bind() needs the model's tokenizer too.")
        hook = resolve_hookpoint(model, self.config.layer, self.config.site, self.config.hookpoint)
        d_model = hidden_size(model)
        if d_model != self.config.d_in:
            raise ShapeMismatchError(f"The model's hidden size is {d_model} but the atlas SAE reads {self.config.d_in}-wide activations; wrong model for this atlas.")
        self._model, self._tokenizer, self._hookpoint = model, tokenizer, hook
        return self

    def model_and_tokenizer(self):
        if self._model is None:
            from atlas_align.models.assets import load_model_and_tokenizer

            try:
                model, tokenizer = load_model_and_tokenizer(self.config.model_id)
            except ModelLoadError as exc:
                raise ModelLoadError(f"The atlas {self.atlas_id!r} needs its model {self.config.model_id!r}: {exc}") from None
            self.bind(model, tokenizer)
        return self._model, self._tokenizer

    def extractor(self, batch_size: int = 16, max_length: int = 128) -> ActivationExtractor:
        model, tokenizer = self.model_and_tokenizer()
        assert self._hookpoint is not None  # set by bind()
        # An atlas pools as its SAE's labels were validated: real tokens minus specials (its model is an
        # encoder, whose CLS/SEP are the special tokens); the subject-side sink rules do not apply.
        return ActivationExtractor(
            model, tokenizer, self._hookpoint, batch_size=batch_size, max_length=max_length,
            token_transform=self.encode_tokens, pooling=ATLAS_POOLING,
        )  # fmt: skip

    # --- activations ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_tokens(self, acts: torch.Tensor) -> torch.Tensor:
        """SAE feature activations for per-token model activations (..., d_in) → (..., width)."""
        return self.sae.encode(acts.to(self.sae.dtype))

    def encode(self, texts: list[str], *, batch_size: int = 16, max_length: int = 128) -> torch.Tensor:
        """Pooled SAE feature activations (N, width): max over each text's real tokens."""
        if not texts:
            return torch.zeros(0, self.width)
        return self.extractor(batch_size, max_length).pooled(list(texts))

    def space(self, batch_size: int = 16, max_length: int = 128) -> AtlasSpace:
        """This atlas as an ActivationSpace for alignment."""
        return AtlasSpace(self, self.extractor(batch_size, max_length))

    def feature_direction(self, feature: int) -> torch.Tensor:
        """Decoder row of ``feature`` in the model's activation space (the steering direction)."""
        if not 0 <= feature < self.width:
            raise ConfigError(f"Feature {feature} is out of range (the atlas has {self.width} features).")
        return self.sae.W_dec[feature].detach().clone()

    # --- files ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the atlas folder atomically (built in a temporary sibling, then renamed into place)."""
        target = Path(directory).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            self.sae.save_model(staging / SAE_DIRNAME)
            _canonicalise_sae_cfg(staging / SAE_DIRNAME / "cfg.json")
            (staging / ATLAS_CONFIG_FILENAME).write_text(json.dumps(self.config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n", encoding="utf-8")
            self.labels.save(staging / LABELS_FILENAME)
            (staging / CARD_FILENAME).write_text(render_card(self), encoding="utf-8")
            _make_readable(staging)
            _replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def summary(self) -> dict[str, Any]:
        validated = self.labels.validated()
        return {
            "atlas_id": self.atlas_id,
            "model_id": self.config.model_id,
            "hookpoint": self.config.hookpoint,
            "layer": self.config.layer,
            "sae": self.config.sae.model_dump(),
            "d_in": self.config.d_in,
            "width": self.width,
            "labels": len(self.labels),
            "validated_labels": len(validated),
            "training": self.config.training.model_dump() if self.config.training else None,
            "corpus": self.config.corpus.model_dump() if self.config.corpus else None,
        }


# ------------------------------------------------------------------------------------------ helpers


def builtin_atlas_dir(name: str = BUILTIN) -> Path:
    """A built-in atlas shipped inside the package (a real folder in wheels and editable installs): 'builtin' is the default."""
    name = BUILTIN_NAMES.get(name, name)
    folder = resources.files("atlas_align") / "data" / BUILTIN_ATLASES[name]
    path = Path(str(folder))
    if not (path / ATLAS_CONFIG_FILENAME).is_file():
        option = " --atlas 1536" if name == BUILTIN_ATLAS_ID else ""
        raise ArtifactNotFound(
            f"The built-in atlas {name!r} is missing from this installation ({path}). Reinstall atlas-align, or rebuild it with "
            f"`python scripts/build_default_atlas.py{option}`."
        )
    return path


def read_atlas_config(path: Path) -> AtlasConfig:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactNotFound(f"{path.parent} has no {path.name}: it is not an atlas folder.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"Cannot read atlas config {path}: {exc}") from None
    if raw.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(
            f"{path} has format_version {raw.get('format_version')!r}; this atlas-align reads version {FORMAT_VERSION}. Upgrade atlas-align."
        )
    try:
        return AtlasConfig.model_validate(raw)
    except ValueError as exc:
        raise IntegrityError(f"{path} is not a valid atlas config:\n{exc}") from None


def _strip_base_prefix(hf_hook: str) -> str:
    """sae-lens records HF module paths from the full model ('model.layers.12'); ours are relative to base_model."""
    for prefix in ("model.", "transformer.", "gpt_neox."):
        if hf_hook.startswith(prefix):
            return hf_hook[len(prefix) :]
    return hf_hook


def _canonicalise_sae_cfg(path: Path) -> None:
    """Rewrite sae-lens' cfg.json with sorted keys and indentation (stable bytes, readable diffs)."""
    cfg = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _make_readable(folder: Path) -> None:
    """mkdtemp / mkstemp create owner-only entries; an atlas (also one shipped as package data) is world-readable."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _replace_dir(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    if not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder; choose another output path.")
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
    os.rmdir(backup)
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)




def render_card(atlas: Atlas) -> str:
    """The README.md model card of an atlas folder."""
    c = atlas.config
    lines = [
        "---",
        "library_name: atlas-align",
        "tags: [atlas-align, concept-atlas, sparse-autoencoder, sae-lens]",
        f"base_model: {c.model_id}",
        "---",
        "",
        f"# Concept Atlas: {atlas.atlas_id}",
        "",
        f"A labelled sparse autoencoder (sae-lens `{c.sae.architecture}`, {c.d_in} → {c.width} features) on "
        f"`{c.model_id}` at `{c.hookpoint}` (layer {c.layer}). Atlas activations are SAE feature activations "
        "max-pooled over each text's real tokens (Atlas-Alignment, arXiv 2510.27413).",
        "",
        "```python",
        "from atlas_align.atlas.atlas import Atlas",
        f"atlas = Atlas.load({atlas.atlas_id!r})",
        'atlas.labels.search("animal")',
        "```",
        "",
    ]
    if c.sae.kind == "sae_lens":
        lines += [f"SAE: sae-lens release `{c.sae.release}`, id `{c.sae.sae_id}`.", ""]
    if c.training is not None:
        t = c.training
        lines += [
            "## Training",
            "",
            "| | |",
            "|---|---|",
            f"| steps × batch tokens | {t.steps} × {t.batch_tokens} (lr {t.lr}) |",
            f"| mean L0 (held-out tokens) | {t.l0:.1f}{f' (k={t.k})' if t.k else ''} |",
            f"| explained variance (held-out tokens) | {t.explained_variance:.3f} |",
            f"| dead / dense features | {t.dead_features} / {t.dense_features} |",
            f"| validated labels (held-out AUROC ≥ {t.validation_auroc}) | {t.validated_features} |",
            "",
        ]
    if c.corpus is not None:
        k = c.corpus
        lines += [
            "## Data",
            "",
            f"Corpus `{k.source}`: {k.n_train_texts} training texts ({k.n_train_tokens} tokens), {k.n_heldout_texts} held-out "
            f"texts for evaluation and labelling; seed {k.seed}.",
            "",
        ]
        if k.source == "builtin":
            lines += ["Built-in corpus: WordNet 3.0 glosses and examples. WordNet 3.0 Copyright 2006 by Princeton University (Princeton WordNet licence).", ""]
    validated = sorted(atlas.labels.validated(), key=lambda x: -(x.score or 0.0))
    if validated:
        lines += ["## Labels", "", "Validated labels: the feature's WordNet category, chosen on one half of the held-out texts and "
                  "checked (AUROC) on the other half. Top 20:", "", "| feature | label | AUROC |", "|---|---|---|"]
        lines += [f"| {x.feature} | {x.label} | {x.score:.3f} |" for x in validated[:20]]
        lines.append("")
    if c.build is not None:
        b = c.build
        lines += [
            "## Rebuild",
            "",
            "```bash",
            f"atlas-align atlas build --model {b['model']} --layer {b['layer']} --width {b['width']} --k {b['k']} --corpus {b['corpus']['source']} "
            f"--samples {b['samples']} --heldout-samples {b['heldout_samples']} --training-tokens {b['training_tokens']} --seed {b['seed']} "
            f"--name {c.name} --out ATLAS_DIR",
            "```",
            "",
        ]
    return "\n".join(lines)
