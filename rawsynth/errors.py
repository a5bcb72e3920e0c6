"""Typed errors.

Every error raised on purpose by rawsynth derives from :class:`RawsynthError`, so a caller can
catch the whole family in one place (a generator skips a bad file and records the reason; a CLI
prints one line and exits non-zero). Messages name the file or value at fault and, where there is
one, the fix.
"""

from __future__ import annotations

import os

__all__ = ["RawsynthError", "InputError", "UnsupportedCFAError", "ConfigError", "ShapeError"]


class RawsynthError(Exception):
    """Base class of every error rawsynth raises on purpose."""


class InputError(RawsynthError, ValueError):
    """A file could not be used as input.

    Attributes:
        path: the file at fault.
        reason: a short machine-friendly reason (``"empty file"``, ``"truncated"``, ``"not an image"``,
            ``"unreadable"``, ``"too large"``, ``"unsupported mode"``, ...), recorded as-is in stats.
        hint: what the user can do about it, or ``None``.
    """

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "", hint: str | None = None):
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        self.hint = hint
        msg = f"{self.path}: {reason}"
        if detail:
            msg += f" ({detail})"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.path, self.reason, self.detail, self.hint))


class UnsupportedCFAError(InputError):
    """The RAW file's colour filter array is not one of the four 2×2 Bayer layouts (X-Trans, Quad Bayer,
    Foveon, monochrome, ...)."""


class ConfigError(RawsynthError, ValueError):
    """A configuration value or file is invalid (unknown key, out-of-range value, wrong type)."""


class ShapeError(RawsynthError, ValueError):
    """A tensor or array argument has the wrong shape, dtype or value range."""
