"""Streaming sufficient statistics for fitting a translation: mean-centred co-moments in float64.

One pass over the corpus accumulates everything every method needs; memory is O(d_s·d_c)
(+ d_c² + d_s² only when a method needs the Gram matrices:
ridge regression, whitened Procrustes, CCA), never O(N). Statistics are mergeable
(``a + b``), so shards computed anywhere (ranks, machines, resumed runs) give the same result.

Why co-moments, not raw sums: Σxy − ΣxΣy/n subtracts two numbers of size n·mean² to get one of
size n·std², losing log10(mean²/std²) digits (all of them at mean/std 1e8). Instead we keep, for
each pair of sides (x, y), the count n, the mean and the centred co-moment
``C = Σ (x − x̄)(y − ȳ)ᵀ`` and merge two parts A, B with Chan et al. (1979)::

    n = n_A + n_B,   δ = ȳ_B − ȳ_A (likewise for x),
    x̄ = x̄_A + δ_x·n_B/n,   C = C_A + C_B + δ_x δ_yᵀ · n_A·n_B/n

A batch's own co-moment is a two-pass sum about the batch mean (with the rounding-error
correction Σd_x·Σd_yᵀ/n_b). Raw activations are first shifted by a fixed reference (the first
batch's mean, ``ref_*``) so that means are stored as small offsets ``mean − ref``: then δ is
computed from numbers of the size of the spread, not of the mean, and merges lose nothing.
Row-normalised activations get a reference too: pooled rows can be nearly parallel (cosine
0.9999 under an attention sink), so their spread is far below their mean.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from atlas_align.errors import (
    ConfigError,
    ConstantColumnWarning,
    DegenerateDataError,
    FewSamplesWarning,
    IntegrityError,
    NonFiniteActivationError,
    ShapeMismatchError,
)
from atlas_align.files import atomic_path

_EPS = 1e-12
# v1 held raw sums (sum_s, sumsq_s, cross_raw, ...); v2 holds references, mean offsets and co-moments.
STATISTICS_FORMAT_VERSION = 2
STATISTICS_KIND = "atlas-align/statistics"
# A column is constant when its spread is below this fraction of its magnitude (float64 round-off).
CONSTANT_TOLERANCE = 1e-12
# Fewer samples than this multiple of min(d_s, d_c) still fit, with a warning: the estimate is noisy.
WARN_SAMPLES_PER_DIMENSION = 2




def row_normalize(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def describe_columns(columns: Sequence[int], limit: int = 10) -> str:
    """'3 columns: 0, 5, 9' (the first ``limit`` named, then a count)."""
    cols = list(columns)
    shown = ", ".join(str(c) for c in cols[:limit])
    more = f", … ({len(cols) - limit} more)" if len(cols) > limit else ""
    return f"{len(cols)} column{'s' if len(cols) != 1 else ''}: {shown}{more}"


# name → (shape in terms of (d_s, d_c), present only with the Gram matrix)
def _layout(d_s: int, d_c: int, with_gram: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "ref_s": (d_s,),  # reference point the raw means are stored about
        "ref_c": (d_c,),
        "mean_offset_s": (d_s,),  # mean − ref
        "mean_offset_c": (d_c,),
        "m2_s": (d_s,),  # Σ (s − s̄)²
        "m2_c": (d_c,),
        "comoment": (d_s, d_c),  # Σ (s − s̄)(c − c̄)ᵀ
        "ref_norm_s": (d_s,),  # the same for row-normalised rows ŝ, ĉ (near-parallel rows need it too)
        "ref_norm_c": (d_c,),
        "mean_offset_norm_s": (d_s,),
        "mean_offset_norm_c": (d_c,),
        "comoment_norm": (d_s, d_c),  # Σ (ŝ − mean ŝ)(ĉ − mean ĉ)ᵀ
    }
    if with_gram:
        shapes["gram_comoment_norm"] = (d_c, d_c)  # Σ (ĉ − mean ĉ)(ĉ − mean ĉ)ᵀ
        shapes["gram_comoment_norm_s"] = (d_s, d_s)  # Σ (ŝ − mean ŝ)(ŝ − mean ŝ)ᵀ (whitened Procrustes, CCA)
    return shapes


def _batch_moments(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean of x, mean of y and the centred co-moment Σ(x − x̄)(y − ȳ)ᵀ of one batch (two-pass, corrected)."""
    n = x.shape[0]
    mx, my = x.mean(0), y.mean(0)
    dx, dy = x - mx, y - my
    sx, sy = dx.sum(0), dy.sum(0)  # ≈ 0; what is left is the round-off of the means
    return mx, my, dx.T @ dy - torch.outer(sx, sy) / n


def _batch_m2(x: torch.Tensor) -> torch.Tensor:
    dx = x - x.mean(0)
    return (dx * dx).sum(0) - dx.sum(0) ** 2 / x.shape[0]


@dataclass
class AlignmentStatistics:
    """Counts, means and centred co-moments of N paired rows (subject s ∈ R^{d_s}, atlas c ∈ R^{d_c}).

    Raw activations serve covariance and correlation; row-normalised ones (ŝ, ĉ) serve
    Procrustes (the paper's default) and ridge regression (with ``with_gram``). Every tensor is
    float64; ``tensors()`` lists the stored state, the methods below derive what methods need.
    """

    d_s: int
    d_c: int
    with_gram: bool = False
    n: int = 0
    ref_s: torch.Tensor = None  # type: ignore[assignment]
    ref_c: torch.Tensor = None  # type: ignore[assignment]
    mean_offset_s: torch.Tensor = None  # type: ignore[assignment]
    mean_offset_c: torch.Tensor = None  # type: ignore[assignment]
    m2_s: torch.Tensor = None  # type: ignore[assignment]
    m2_c: torch.Tensor = None  # type: ignore[assignment]
    comoment: torch.Tensor = None  # type: ignore[assignment]
    ref_norm_s: torch.Tensor = None  # type: ignore[assignment]
    ref_norm_c: torch.Tensor = None  # type: ignore[assignment]
    mean_offset_norm_s: torch.Tensor = None  # type: ignore[assignment]
    mean_offset_norm_c: torch.Tensor = None  # type: ignore[assignment]
    comoment_norm: torch.Tensor = None  # type: ignore[assignment]
    gram_comoment_norm: torch.Tensor | None = None
    gram_comoment_norm_s: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name, shape in self._shapes().items():
            value = getattr(self, name)
            if value is None:
                setattr(self, name, torch.zeros(shape, dtype=torch.float64))
            elif tuple(value.shape) != shape:
                raise ShapeMismatchError(f"Statistics tensor {name!r} has shape {tuple(value.shape)}, expected {shape}.")
            else:
                setattr(self, name, value.to(torch.float64))

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return _layout(self.d_s, self.d_c, self.with_gram)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The stored state, by name (what save, merge and all-reduce move around)."""
        return {name: getattr(self, name) for name in self._shapes()}

    def copy_from(self, other: AlignmentStatistics) -> AlignmentStatistics:
        """Overwrite this object's state with ``other``'s (same shape), in place."""
        self._check_compatible(other)
        self.n = other.n
        for name, tensor in other.tensors().items():
            getattr(self, name).copy_(tensor)
        return self

    # --- accumulation ---------------------------------------------------------------------
    def update(self, subject: torch.Tensor, atlas: torch.Tensor) -> AlignmentStatistics:
        """Add a batch of paired rows (converted to float64); NaN/inf rows are refused, naming them."""
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
        if subject.shape[0] == 0:
            return self
        s = subject.detach().to("cpu", torch.float64)
        c = atlas.detach().to("cpu", torch.float64)
        self._check_finite(s, "subject")
        self._check_finite(c, "atlas")
        # The batch's own mean is its reference point; merging converts it into this object's frame.
        ref_s, ref_c = s.mean(0), c.mean(0)
        offset_s, offset_c, comoment = _batch_moments(s - ref_s, c - ref_c)
        s_hat, c_hat = row_normalize(s), row_normalize(c)
        ref_ns, ref_nc = s_hat.mean(0), c_hat.mean(0)
        offset_ns, offset_nc, comoment_norm = _batch_moments(s_hat - ref_ns, c_hat - ref_nc)
        batch = AlignmentStatistics(
            self.d_s, self.d_c, self.with_gram, n=s.shape[0], ref_s=ref_s, ref_c=ref_c,
            mean_offset_s=offset_s, mean_offset_c=offset_c, m2_s=_batch_m2(s - ref_s), m2_c=_batch_m2(c - ref_c),
            comoment=comoment, ref_norm_s=ref_ns, ref_norm_c=ref_nc, mean_offset_norm_s=offset_ns,
            mean_offset_norm_c=offset_nc, comoment_norm=comoment_norm,
            gram_comoment_norm=_batch_moments(c_hat - ref_nc, c_hat - ref_nc)[2] if self.with_gram else None,
            gram_comoment_norm_s=_batch_moments(s_hat - ref_ns, s_hat - ref_ns)[2] if self.with_gram else None,
        )  # fmt: skip
        return self.merge_(batch)

    def _check_finite(self, x: torch.Tensor, side: str) -> None:
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            rows = torch.nonzero(bad.any(1)).flatten().tolist()
            raise NonFiniteActivationError(
                f"The {side} activations of the batch of samples {self.n}–{self.n + x.shape[0] - 1} (this shard's "
                f"count) hold {int(bad.sum())} NaN/inf values in {len(rows)} of {x.shape[0]} rows (batch rows "
                f"{', '.join(map(str, rows[:10]))}{', …' if len(rows) > 10 else ''}). The model overflowed or the "
                f"input is broken; try --dtype float32, shorter --max-length, or drop those texts."
            )

    def _check_compatible(self, other: AlignmentStatistics) -> None:
        if (self.d_s, self.d_c, self.with_gram) != (other.d_s, other.d_c, other.with_gram):
            raise ShapeMismatchError(
                f"Cannot merge statistics of shapes ({self.d_s}, {self.d_c}, gram={self.with_gram}) and "
                f"({other.d_s}, {other.d_c}, gram={other.with_gram})."
            )

    def __add__(self, other: AlignmentStatistics) -> AlignmentStatistics:
        """The merged statistics of both parts (a new object; neither part changes)."""
        self._check_compatible(other)
        clone = AlignmentStatistics(self.d_s, self.d_c, self.with_gram, n=self.n, **{k: v.clone() for k, v in self.tensors().items()})
        return clone.merge_(other)

    def merge_(self, other: AlignmentStatistics) -> AlignmentStatistics:
        """Merge ``other`` into this object in place (Chan et al.); this object's reference point stays."""
        self._check_compatible(other)
        if other.n == 0:
            return self
        if self.n == 0:
            return self.copy_from(other)
        n_a, n_b = self.n, other.n
        n = n_a + n_b
        w, f = n_a * n_b / n, n_b / n
        # Other's means in this reference frame: ref_b − ref_a is exact when the references are close.
        delta_s = (other.ref_s - self.ref_s) + (other.mean_offset_s - self.mean_offset_s)
        delta_c = (other.ref_c - self.ref_c) + (other.mean_offset_c - self.mean_offset_c)
        delta_ns = (other.ref_norm_s - self.ref_norm_s) + (other.mean_offset_norm_s - self.mean_offset_norm_s)
        delta_nc = (other.ref_norm_c - self.ref_norm_c) + (other.mean_offset_norm_c - self.mean_offset_norm_c)
        self.n = n
        self.mean_offset_s.add_(delta_s * f)
        self.mean_offset_c.add_(delta_c * f)
        self.m2_s.add_(other.m2_s + delta_s * delta_s * w)
        self.m2_c.add_(other.m2_c + delta_c * delta_c * w)
        self.comoment.add_(other.comoment).addr_(delta_s, delta_c, alpha=w)
        self.mean_offset_norm_s.add_(delta_ns * f)
        self.mean_offset_norm_c.add_(delta_nc * f)
        self.comoment_norm.add_(other.comoment_norm).addr_(delta_ns, delta_nc, alpha=w)
        if self.with_gram:
            self.gram_comoment_norm.add_(other.gram_comoment_norm).addr_(delta_nc, delta_nc, alpha=w)
            self.gram_comoment_norm_s.add_(other.gram_comoment_norm_s).addr_(delta_ns, delta_ns, alpha=w)
        return self

    # --- derived quantities -------------------------------------------------------------
    def mean_s(self) -> torch.Tensor:
        return self.ref_s + self.mean_offset_s

    def mean_c(self) -> torch.Tensor:
        return self.ref_c + self.mean_offset_c

    def std_s(self) -> torch.Tensor:
        return (self.m2_s.clamp_min(0.0) / max(self.n - 1, 1)).sqrt()

    def std_c(self) -> torch.Tensor:
        return (self.m2_c.clamp_min(0.0) / max(self.n - 1, 1)).sqrt()

    def constant_columns(self) -> tuple[list[int], list[int]]:
        """Subject and atlas dimensions that never vary (spread within float64 round-off of the mean)."""

        def constant(m2: torch.Tensor, mean: torch.Tensor) -> list[int]:
            spread = (m2.clamp_min(0.0) / max(self.n, 1)).sqrt()
            return torch.nonzero(spread <= CONSTANT_TOLERANCE * mean.abs()).flatten().tolist()

        return constant(self.m2_s, self.mean_s()), constant(self.m2_c, self.mean_c())

    def covariance(self) -> torch.Tensor:
        """Cross-covariance (d_s, d_c) of the raw activations (unbiased, n − 1)."""
        return self.comoment / max(self.n - 1, 1)

    def correlation(self) -> torch.Tensor:
        """Pearson cross-correlation (d_s, d_c); a constant column's correlation is undefined: 0, with a warning naming it."""
        const_s, const_c = self.constant_columns()
        if const_s or const_c:
            warnings.warn(
                "Correlation is undefined for activation dimensions that never vary; they get correlation 0 "
                f"(subject {describe_columns(const_s)}; atlas {describe_columns(const_c)}).",
                ConstantColumnWarning,
                stacklevel=2,
            )
        scale_s = self.m2_s.clamp_min(0.0).sqrt()
        scale_c = self.m2_c.clamp_min(0.0).sqrt()
        scale_s[const_s] = math.inf
        scale_c[const_c] = math.inf
        return self.comoment / scale_s[:, None] / scale_c[None, :]

    def centered_cross_norm(self) -> torch.Tensor:
        """Σ (ŝ − mean ŝ)(ĉ − mean ĉ)ᵀ over row-normalised rows (centred Procrustes)."""
        return self.comoment_norm

    @property
    def mean_norm_s(self) -> torch.Tensor:
        """Mean of the row-normalised subject rows ŝ."""
        return self.ref_norm_s + self.mean_offset_norm_s

    @property
    def mean_norm_c(self) -> torch.Tensor:
        return self.ref_norm_c + self.mean_offset_norm_c

    @property
    def sum_norm_s(self) -> torch.Tensor:
        return self.mean_norm_s * self.n

    @property
    def sum_norm_c(self) -> torch.Tensor:
        return self.mean_norm_c * self.n

    @property
    def cross_norm(self) -> torch.Tensor:
        """Σ ŝ ĉᵀ (uncentred; the paper's Procrustes and ridge regression)."""
        return self.comoment_norm + torch.outer(self.mean_norm_s, self.mean_norm_c) * self.n

    @property
    def gram_norm(self) -> torch.Tensor | None:
        """Σ ĉ ĉᵀ (ridge regression), or None without ``with_gram``."""
        if not self.with_gram:
            return None
        return self.gram_comoment_norm + torch.outer(self.mean_norm_c, self.mean_norm_c) * self.n

    def covariance_norm(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Σ_s, Σ_sc, Σ_c): covariances of the row-normalised rows ŝ, ĉ (unbiased, n − 1); needs ``with_gram``.

        What whitened Procrustes and CCA need; Σ_s is (d_s, d_s), Σ_sc (d_s, d_c), Σ_c (d_c, d_c).
        """
        if not self.with_gram:
            raise ConfigError("The covariances of both sides need statistics collected with with_gram=True.")
        denominator = max(self.n - 1, 1)
        return self.gram_comoment_norm_s / denominator, self.comoment_norm / denominator, self.gram_comoment_norm / denominator

    def require_enough_samples(self, method: str) -> None:
        """Refuse a fit that the data cannot determine; warn when it is merely noisy.

        A centred d_s × d_c cross-moment of n rows has rank ≤ n − 1, so with n ≤ min(d_s, d_c) part
        of T is arbitrary (the SVD picks any completion); below ``WARN_SAMPLES_PER_DIMENSION`` × that
        the estimate is determined but noisy.
        """
        need = min(self.d_s, self.d_c) + 1
        if self.n < max(need, 2):
            raise DegenerateDataError(
                f"{method} cannot be fitted from {self.n} sample{'s' if self.n != 1 else ''}: with d_s={self.d_s} and "
                f"d_c={self.d_c} it needs at least {max(need, 2)} (one more than the smaller width), or part of T "
                f"is arbitrary. Use a larger corpus or --samples."
            )
        const_s, const_c = self.constant_columns()
        for side, constant, width in (("subject", const_s, self.d_s), ("atlas", const_c, self.d_c)):
            if len(constant) == width:
                raise DegenerateDataError(
                    f"{method} cannot be fitted: every {side} activation dimension is constant over the {self.n} samples "
                    f"({describe_columns(constant)}), so nothing varies to align. The corpus is one text repeated, or "
                    f"the {side} model's output does not depend on its input."
                )
        if self.n < WARN_SAMPLES_PER_DIMENSION * (need - 1):
            warnings.warn(
                f"{method} is fitted from only {self.n} samples for min(d_s, d_c) = {need - 1} dimensions; the "
                f"translation will be noisy (use ≥ {WARN_SAMPLES_PER_DIMENSION * (need - 1)} samples).",
                FewSamplesWarning,
                stacklevel=3,
            )

    # --- persistence (checkpoints, shards) ----------------------------------------------
    def save(self, path: str | Path, *, companions: Mapping[str, AlignmentStatistics] | None = None) -> None:
        """Atomic write: a crash mid-save never leaves a truncated checkpoint.

        ``companions`` (same shape, e.g. the shuffled-pairs control) are stored in the same file under
        ``<name>.``-prefixed keys, so one checkpoint never mixes two points of a run.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "n": str(self.n), "d_s": str(self.d_s), "d_c": str(self.d_c), "with_gram": str(int(self.with_gram)),
            "kind": STATISTICS_KIND, "format_version": str(STATISTICS_FORMAT_VERSION),
        }  # fmt: skip
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
        if meta.get("kind") != STATISTICS_KIND:
            raise IntegrityError(f"{path} is not an atlas-align statistics file.")
        version = meta.get("format_version", "1")
        if version != str(STATISTICS_FORMAT_VERSION):
            raise IntegrityError(
                f"{path} holds statistics in format version {version}; this atlas-align reads version "
                f"{STATISTICS_FORMAT_VERSION} (mean-centred co-moments, not raw sums). It cannot be resumed: "
                f"delete it or point --checkpoint elsewhere and run without --resume."
            )
        if f"{prefix}n" not in meta:
            return None
        tensors = {k[len(prefix) :]: v for k, v in load_file(str(path)).items() if k.startswith(prefix) and "." not in k[len(prefix) :]}
        d_s, d_c, with_gram = int(meta["d_s"]), int(meta["d_c"]), bool(int(meta["with_gram"]))
        missing = sorted(set(_layout(d_s, d_c, with_gram)) - set(tensors))
        if missing == ["gram_comoment_norm_s"]:
            raise IntegrityError(
                f"{path} was written before with_gram statistics kept the subject-side Gram matrix "
                f"({prefix}gram_comoment_norm_s), so it cannot be resumed: delete it or point --checkpoint elsewhere "
                f"and run without --resume."
            )
        if missing:
            raise IntegrityError(f"{path} lacks statistics tensors {', '.join(prefix + m for m in missing)}; it is incomplete.")
        return cls(d_s, d_c, with_gram, n=int(meta[f"{prefix}n"]), **tensors)
