"""One exception tree for atlas-align.

Every error a user can cause derives from :class:`AtlasAlignError` and also from the builtin
that matches it, so ``except FileNotFoundError`` keeps working. Messages say what was wrong and
what to do; the CLI prints them without a traceback.
"""

from __future__ import annotations


class AtlasAlignError(Exception):
    """Root of every error raised on purpose by atlas-align."""


class ConfigError(AtlasAlignError, ValueError):
    """A configuration or argument is invalid."""


class NotFittedError(AtlasAlignError, RuntimeError):
    """A method's learned state was used before ``fit``."""


class UnknownNameError(AtlasAlignError, KeyError):
    """A name looked up in a plug-in registry does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class HookpointError(AtlasAlignError, ValueError):
    """A layer index or module path does not resolve on this model."""


class CorpusError(AtlasAlignError, ValueError):
    """The shared-input corpus is missing, empty or malformed."""


class ShapeMismatchError(AtlasAlignError, ValueError):
    """Tensors or configs disagree on a dimension."""


class ArtifactNotFound(AtlasAlignError, FileNotFoundError):
    """An artifact folder, repo, revision or file does not exist."""


class IntegrityError(AtlasAlignError, ValueError):
    """A downloaded or saved file does not match its recorded checksum or format."""


class AuthError(AtlasAlignError, PermissionError):
    """A token is missing or lacks the rights for this operation."""


class ModelLoadError(AtlasAlignError, RuntimeError):
    """A model could not be loaded (missing offline asset, bad path)."""


class NotYetImplemented(AtlasAlignError, NotImplementedError):
    """A capability that is planned but not built yet."""


class DegenerateDataError(AtlasAlignError, ValueError):
    """The activations cannot support a fit: too few samples, non-finite values, or nothing to align."""


class NonFiniteActivationError(DegenerateDataError):
    """A batch of activations holds NaN or ±inf values."""


class NonFiniteScoreError(AtlasAlignError, ValueError):
    """A translation or its scores hold NaN or ±inf, so no metric computed from them means anything."""


class FewSamplesWarning(UserWarning):
    """Enough samples to fit, too few for a reliable estimate."""


class ConstantColumnWarning(UserWarning):
    """Some activation dimensions never vary, so their correlation is undefined (set to 0)."""
