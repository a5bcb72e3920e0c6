"""Typed errors, the one error contract of rawsynth, rddm and benchmarks: ``RawsynthError(message, *, path, fix)``
reads ``"PATH: MESSAGE. Fix: FIX"``. See ``docs/architecture.md``."""

from __future__ import annotations

import os

__all__ = ["RawsynthError", "InputError", "UnsupportedCFAError", "ConfigError", "ShapeError"]


def _rebuild(cls, args, state):
    e = Exception.__new__(cls)
    e.args = args
    e.__dict__.update(state)
    return e


class RawsynthError(Exception):
    """Base class of every error the project raises on purpose.

    Args:
        message: what is wrong.
        path: the file or folder at fault, if any (printed first).
        fix: what the user can do about it, if anything (printed last, after ``Fix:``).
    """

    def __init__(self, message: str = "", *, path: str | os.PathLike | None = None, fix: str | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.fix = fix
        text = message if self.path is None else f"{self.path}: {message}"
        if fix:
            text += f". Fix: {fix}"
        super().__init__(text)

    def __reduce__(self):  # picklable across process pools and torch.distributed object collectives
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class InputError(RawsynthError, ValueError):
    """A file could not be used as input.

    ``InputError(path, reason, detail="", hint=None)`` (positional, the original form) or
    ``InputError(message, path=..., reason=..., fix=...)`` (keywords, the base contract plus ``reason``).

    Attributes:
        path: the file at fault.
        reason: a short machine-friendly reason (``"empty file"``, ``"truncated"``, ``"not an image"``,
            ``"unreadable"``, ``"too large"``, ``"unsupported mode"``, ...), recorded as-is in stats.
        detail: what exactly went wrong (may be empty).
        fix: what the user can do about it, or ``None`` (``hint`` is the same value).
    """

    def __init__(self, *args, path: str | os.PathLike | None = None, reason: str | None = None,
                 detail: str = "", hint: str | None = None, fix: str | None = None):
        if reason is None:  # positional form: (path, reason, detail="", hint=None)
            path, reason, *rest = args
            detail = rest[0] if rest else detail
            hint = rest[1] if len(rest) > 1 else hint
            message = reason + (f" ({detail})" if detail else "")
        else:
            message = args[0] if args else reason
            detail = detail or (args[0] if args else "")
        self.reason = reason
        self.detail = detail
        super().__init__(message, path=path, fix=fix or hint)

    @property
    def hint(self) -> str | None:
        return self.fix


class UnsupportedCFAError(InputError):
    """The RAW file's colour filter array is not one of the four 2×2 Bayer layouts (X-Trans, Quad Bayer,
    Foveon, monochrome, ...)."""


class ConfigError(RawsynthError, ValueError):
    """A configuration value or file is invalid (unknown key, out-of-range value, wrong type, bad option).

    The one ``ConfigError`` of the project: ``rddm.errors.ConfigError`` and benchmarks use this class.
    """


class ShapeError(RawsynthError, ValueError):
    """A tensor or array argument has the wrong shape, dtype or value range."""
