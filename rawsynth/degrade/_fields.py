"""Field validators shared by the degradation configs and params: raw value in, canonical form out, or a
``ConfigError`` naming the field. See ``docs/degrade.md``."""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

from ..errors import ConfigError

PROB_SUM_TOL = 1e-6


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def as_float(v, name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    """A finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    if not _is_number(v):
        raise ConfigError(f"{name} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ConfigError(f"{name} must be finite, got {f}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise ConfigError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {f}")
    if hi is not None and f > hi:
        raise ConfigError(f"{name} must be <= {hi}, got {f}")
    return f


def as_int(v, name: str, lo: int | None = None, hi: int | None = None, odd: bool = False) -> int:
    """An int in ``[lo, hi]`` (odd if asked). Floats are rejected, even integral ones."""
    if not _is_int(v):
        raise ConfigError(f"{name} must be an int, got {v!r}")
    i = int(v)
    if lo is not None and i < lo:
        raise ConfigError(f"{name} must be >= {lo}, got {i}")
    if hi is not None and i > hi:
        raise ConfigError(f"{name} must be <= {hi}, got {i}")
    if odd and i % 2 == 0:
        raise ConfigError(f"{name} must be odd, got {i}")
    return i


def as_bool(v, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise ConfigError(f"{name} must be true or false, got {v!r}")
    return bool(v)


def as_prob(v, name: str) -> float:
    """A probability in ``[0, 1]``."""
    return as_float(v, name, 0.0, 1.0)


def _as_seq(v, name: str, n: int | None = None) -> tuple:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple, np.ndarray)):
        raise ConfigError(f"{name} must be a list, got {v!r}")
    t = tuple(v.tolist() if isinstance(v, np.ndarray) else v)
    if n is not None and len(t) != n:
        raise ConfigError(f"{name} must have {n} entries, got {len(t)}: {list(t)!r}")
    return t


def as_probs(v, name: str, n: int | None = None) -> tuple[float, ...]:
    """Non-negative probabilities summing to 1 (within 1e-6)."""
    t = tuple(as_float(x, f"{name}[{i}]", 0.0) for i, x in enumerate(_as_seq(v, name, n)))
    if not t or abs(sum(t) - 1.0) > PROB_SUM_TOL:
        raise ConfigError(f"{name} must sum to 1, got {list(t)} (sum {sum(t)})")
    return t


def as_range(v, name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
             contains: float | None = None) -> tuple[float, float]:
    """``(a, b)`` floats with ``a <= b`` inside ``[lo, hi]`` (and ``a <= contains <= b`` if given)."""
    a, b = (as_float(x, f"{name}[{i}]", lo, hi, lo_open) for i, x in enumerate(_as_seq(v, name, 2)))
    if a > b:
        raise ConfigError(f"{name} must be (lo, hi) with lo <= hi, got [{a}, {b}]")
    if contains is not None and not a <= contains <= b:
        raise ConfigError(f"{name} must contain {contains} (lo <= {contains} <= hi), got [{a}, {b}]")
    return a, b


def as_int_range(v, name: str, lo: int | None = None, hi: int | None = None,
                 odd: bool = False) -> tuple[int, int]:
    """``(a, b)`` ints with ``a <= b`` inside ``[lo, hi]`` (both odd if asked)."""
    a, b = (as_int(x, f"{name}[{i}]", lo, hi, odd) for i, x in enumerate(_as_seq(v, name, 2)))
    if a > b:
        raise ConfigError(f"{name} must be (lo, hi) with lo <= hi, got [{a}, {b}]")
    return a, b


def as_size(v, name: str) -> tuple[int, int]:
    """An image size ``(height, width)``, both >= 1."""
    return tuple(as_int(x, f"{name}[{i}]", 1) for i, x in enumerate(_as_seq(v, name, 2)))  # type: ignore


def as_enum(cls: type[Enum], v, name: str):
    """The member of ``cls`` whose value is ``v`` (or ``v`` itself)."""
    try:
        return cls(v)
    except ValueError:
        raise ConfigError(f"{name} must be one of {[m.value for m in cls]}, got {v!r}") from None


def as_enum_tuple(cls: type[Enum], v, name: str, exclude: tuple = ()) -> tuple:
    """A non-empty tuple of distinct members of ``cls`` (none of them in ``exclude``)."""
    t = tuple(as_enum(cls, x, f"{name}[{i}]") for i, x in enumerate(_as_seq(v, name)))
    if not t:
        raise ConfigError(f"{name} must not be empty")
    if len(set(t)) != len(t):
        raise ConfigError(f"{name} has duplicates: {[m.value for m in t]}")
    bad = [m.value for m in t if m in exclude]
    if bad:
        raise ConfigError(f"{name} must not contain {bad}")
    return t


def as_instance(cls: type, v, name: str):
    if not isinstance(v, cls):
        raise ConfigError(f"{name} must be a {cls.__name__}, got {type(v).__name__} (build it with "
                          f"{cls.__name__}.from_dict for a mapping)")
    return v
