"""Streaming sufficient statistics for fitting a translation, in float64.

One pass over the corpus accumulates everything every method needs; memory is O(d_s·d_c)
(+ d_c² only when a regression needs the Gram matrix), never O(N). Statistics are mergeable
(``a + b``), so shards computed anywhere (ranks, machines, resumed runs) sum to the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from atlas_align.errors import IntegrityError, ShapeMismatchError
from atlas_align.files import atomic_path

_EPS = 1e-12


def row_normalize(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


@dataclass
class AlignmentStatistics:
    """Sums over N paired rows (subject s ∈ R^{d_s}, atlas c ∈ R^{d_c}).

    ``*_norm`` sums are over L2-row-normalised activations (Procrustes, paper's default);
    the raw sums serve covariance and correlation; ``gram_norm`` = Σ ĉ ĉᵀ serves ridge regression.
    """

    d_s: int
    d_c: int
    with_gram: bool = False
    n: int = 0
    sum_s: torch.Tensor = field(default=None)  # type: ignore[assignment]
    sum_c: torch.Tensor = field(default=None)  # type: ignore[assignment]
    sumsq_s: torch.Tensor = field(default=None)  # type: ignore[assignment]
    sumsq_c: torch.Tensor = field(default=None)  # type: ignore[assignment]
    cross_raw: torch.Tensor = field(default=None)  # type: ignore[assignment]
    sum_norm_s: torch.Tensor = field(default=None)  # type: ignore[assignment]
    sum_norm_c: torch.Tensor = field(default=None)  # type: ignore[assignment]
    cross_norm: torch.Tensor = field(default=None)  # type: ignore[assignment]
    gram_norm: torch.Tensor | None = None

    def __post_init__(self) -> None:
        f64 = torch.float64
        for name, shape in self._shapes().items():
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros(shape, dtype=f64))

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {
            "sum_s": (self.d_s,),
            "sum_c": (self.d_c,),
            "sumsq_s": (self.d_s,),
            "sumsq_c": (self.d_c,),
            "cross_raw": (self.d_s, self.d_c),
            "sum_norm_s": (self.d_s,),
            "sum_norm_c": (self.d_c,),
            "cross_norm": (self.d_s, self.d_c),
        }
        if self.with_gram:
            shapes["gram_norm"] = (self.d_c, self.d_c)
        return shapes

    def update(self, subject: torch.Tensor, atlas: torch.Tensor) -> AlignmentStatistics:
        """Add a batch of paired rows: one GEMM per cross-product, all in float64."""
        if subject.ndim != 2 or atlas.ndim != 2 or subject.shape[0] != atlas.shape[0]:
            raise ShapeMismatchError(
                f"Need paired 2-D batches with the same number of rows; got subject {tuple(subject.shape)} "
                f"and atlas {tuple(atlas.shape)}."
            )
        if subject.shape[1] != self.d_s or atlas.shape[1] != self.d_c:
            raise ShapeMismatchError(
                f"Batch widths ({subject.shape[1]}, {atlas.shape[1]}) do not match the statistics "
                f"(d_s={self.d_s}, d_c={self.d_c})."
            )
        s = subject.detach().to("cpu", torch.float64)
        c = atlas.detach().to("cpu", torch.float64)
        s_hat, c_hat = row_normalize(s), row_normalize(c)
        self.n += s.shape[0]
        self.sum_s += s.sum(0)
        self.sum_c += c.sum(0)
        self.sumsq_s += (s * s).sum(0)
        self.sumsq_c += (c * c).sum(0)
        self.cross_raw.addmm_(s.T, c)
        self.sum_norm_s += s_hat.sum(0)
        self.sum_norm_c += c_hat.sum(0)
        self.cross_norm.addmm_(s_hat.T, c_hat)
        if self.with_gram:
            self.gram_norm.addmm_(c_hat.T, c_hat)
        return self

    def __add__(self, other: AlignmentStatistics) -> AlignmentStatistics:
        if (self.d_s, self.d_c, self.with_gram) != (other.d_s, other.d_c, other.with_gram):
            raise ShapeMismatchError(
                f"Cannot merge statistics of shapes ({self.d_s}, {self.d_c}, gram={self.with_gram}) and "
                f"({other.d_s}, {other.d_c}, gram={other.with_gram})."
            )
        merged = AlignmentStatistics(self.d_s, self.d_c, self.with_gram)
        merged.n = self.n + other.n
        for name in self._shapes():
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        return merged

    # --- derived quantities -------------------------------------------------------------
    def mean_s(self) -> torch.Tensor:
        return self.sum_s / max(self.n, 1)

    def mean_c(self) -> torch.Tensor:
        return self.sum_c / max(self.n, 1)

    def std_s(self) -> torch.Tensor:
        return _std(self.sumsq_s, self.sum_s, self.n)

    def std_c(self) -> torch.Tensor:
        return _std(self.sumsq_c, self.sum_c, self.n)

    def covariance(self) -> torch.Tensor:
        """Cross-covariance (d_s, d_c) of the raw activations."""
        n = max(self.n, 2)
        return (self.cross_raw - torch.outer(self.sum_s, self.sum_c) / n) / (n - 1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._shapes()}

    # --- persistence (checkpoints, shards) ----------------------------------------------
    def save(self, path: str | Path, *, companions: Mapping[str, AlignmentStatistics] | None = None) -> None:
        """Atomic write: a crash mid-save never leaves a truncated checkpoint.

        ``companions`` (same shape, e.g. the shuffled-pairs control) are stored in the same file under
        ``<name>.``-prefixed keys, so one checkpoint never mixes two points of a run.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"n": str(self.n), "d_s": str(self.d_s), "d_c": str(self.d_c), "with_gram": str(int(self.with_gram)), "kind": "atlas-align/statistics"}
        tensors = {k: v.contiguous() for k, v in self.tensors().items()}
        for name, other in (companions or {}).items():
            meta[f"{name}.n"] = str(other.n)
            tensors.update({f"{name}.{k}": v.contiguous() for k, v in other.tensors().items()})
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> AlignmentStatistics:
        stats = cls._load(path, "")
        if stats is None:
            raise IntegrityError(f"{path} has no sample count in its header; it is not a complete statistics file.")
        return stats

    @classmethod
    def load_companion(cls, path: str | Path, name: str) -> AlignmentStatistics | None:
        """The companion saved under ``name`` by ``save(..., companions=)``; None if the file has none."""
        return cls._load(path, f"{name}.")

    @classmethod
    def _load(cls, path: str | Path, prefix: str) -> AlignmentStatistics | None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        if meta.get("kind") != "atlas-align/statistics":
            raise IntegrityError(f"{path} is not an atlas-align statistics file.")
        if f"{prefix}n" not in meta:
            return None
        tensors = {k[len(prefix) :]: v for k, v in load_file(str(path)).items() if k.startswith(prefix) and "." not in k[len(prefix) :]}
        return cls(int(meta["d_s"]), int(meta["d_c"]), bool(int(meta["with_gram"])), n=int(meta[f"{prefix}n"]), **tensors)


def _std(sumsq: torch.Tensor, total: torch.Tensor, n: int) -> torch.Tensor:
    n = max(n, 2)
    var = (sumsq - total * total / n) / (n - 1)
    return var.clamp_min(0.0).sqrt()


