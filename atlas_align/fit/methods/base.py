"""The estimator contract every translation method follows.

Hyper-parameters go in ``__init__``; ``fit(stats)`` returns ``self``; learned state ends in ``_``:
``T_`` (d_s, d_c) maps atlas space → subject space (its transpose maps back), and
``subject_shift_`` / ``subject_scale_`` say how subject activations are standardised before
``T_ᵀ`` is applied (after an optional row normalisation, ``row_normalize``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from atlas_align.errors import DegenerateDataError, NotFittedError
from atlas_align.fit.statistics import AlignmentStatistics
from atlas_align.plugins import Registry

METHODS: Registry[type[AlignmentMethod]] = Registry("alignment method")


class AlignmentMethod:
    name: ClassVar[str] = ""
    needs_gram: ClassVar[bool] = False
    row_normalize: ClassVar[bool] = True

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def fit(self, stats: AlignmentStatistics) -> AlignmentMethod:
        raise NotImplementedError

    def check_is_fitted(self) -> None:
        if getattr(self, "T_", None) is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call .fit(statistics) first.")

    def _set_state(self, T: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> AlignmentMethod:
        """Store the learned state, refusing a T (or standardisation) that would translate to nonsense."""
        for what, tensor in (("T", T), ("subject shift", shift), ("subject scale", scale)):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise DegenerateDataError(
                    f"{self.name} produced a {what} with {bad} non-finite values (of {tensor.numel()}); the statistics "
                    f"overflowed float64 or are degenerate. Check the activations' scale."
                )
        if not bool(T.any()):
            raise DegenerateDataError(
                f"{self.name} produced an all-zero T: no activation dimension varies with any other. "
                f"The corpus is too uniform (or every column is constant) to align anything."
            )
        if bool((scale == 0).any()):
            raise DegenerateDataError(f"{self.name} produced a subject scale of 0, which would divide by zero.")
        self.T_ = T.to(torch.float64)
        self.subject_shift_ = shift.to(torch.float64)
        self.subject_scale_ = scale.to(torch.float64)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def get_method(name: str, **params: Any) -> AlignmentMethod:
    """Instantiate a registered method by name (unknown names list the valid ones)."""
    return METHODS.get(name)(**params)
