"""Typed errors of the RDDM code; :class:`ConfigError` *is* :class:`rawsynth.errors.ConfigError`.
See ``docs/architecture.md``."""

from __future__ import annotations

import os

from rawsynth.errors import ConfigError, RawsynthError

__all__ = ["RddmError", "ConfigError", "WeightsError", "DataError", "CheckpointError", "TrainingDivergedError"]


class RddmError(RawsynthError):
    """Base class of the errors only the RDDM code raises (weights, data, checkpoints).

    ``RddmError(message, path=None, fix=None)``: :class:`~rawsynth.errors.RawsynthError`'s contract (``path`` and
    ``fix`` may also be given by position here).
    """

    def __init__(self, message: str = "", path: str | os.PathLike | None = None, fix: str | None = None):
        super().__init__(message, path=path, fix=fix)


class WeightsError(RddmError):
    """Weights could not be found or loaded (a missing SD folder, missing LPIPS files, a corrupt checkpoint)."""


class DataError(RddmError):
    """The training data cannot be used (no shards, too few samples for a batch, pairs of the wrong mode)."""


class CheckpointError(RddmError):
    """A training output folder or checkpoint is missing, incomplete or does not match the run."""


class TrainingDivergedError(RddmError):
    """``max_nonfinite`` optimizer steps in a row had a non-finite loss or gradient norm (see
    :mod:`rddm.train.guard`); the message names the steps."""
