"""Translation methods, by name: procrustes (default), covariance, correlation, linear_regression, random_rotation,
whitened_procrustes, cca."""

from atlas_align.fit.methods import baselines, procrustes, whitened  # noqa: F401  (registration)
from atlas_align.fit.methods.base import METHODS, AlignmentMethod, get_method

__all__ = ["METHODS", "AlignmentMethod", "get_method"]
