"""Typed errors of the RDDM training code.

Every error raised on purpose derives from :class:`RddmError`, itself a :class:`rawsynth.errors.RawsynthError`,
so one ``except RawsynthError`` catches the errors of the shard reader and of training alike (the ``rddm``
command prints one line and exits with status 2). Messages name the file or value at fault and the fix.
"""

from __future__ import annotations

import os

from rawsynth.errors import ConfigError as _RawsynthConfigError
from rawsynth.errors import RawsynthError

__all__ = ["RddmError", "ConfigError", "WeightsError", "DataError", "CheckpointError"]


class RddmError(RawsynthError):
    """Base class of every error the RDDM code raises on purpose.

    Args:
        message: what is wrong.
        path: the file or folder at fault, if any (printed first).
        fix: what the user can do about it, if anything (printed last).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, fix: str | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.fix = fix
        text = message if self.path is None else f"{self.path}: {message}"
        if fix:
            text += f". Fix: {fix}"
        super().__init__(text)

    def __reduce__(self):  # picklable (multiprocessing, torch.distributed object collectives)
        return (type(self), (self.message, self.path, self.fix))


class ConfigError(RddmError, _RawsynthConfigError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range, conflicting options)."""


class WeightsError(RddmError):
    """Weights could not be found or loaded (a missing SD folder, missing LPIPS files, a corrupt checkpoint)."""


class DataError(RddmError):
    """The training data cannot be used (no shards, too few samples for a batch, pairs of the wrong mode)."""


class CheckpointError(RddmError):
    """A training output folder or checkpoint is missing, incomplete or does not match the run."""
