"""EXIF/TIFF ``Orientation`` (codes 1–8) applied to arrays and mosaics (sensor order → display order), and
LibRaw's ``flip`` codes. See ``docs/io.md``."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["LIBRAW_FLIP_TO_EXIF", "orient", "unorient", "swaps_axes"]

#: LibRaw / dcraw ``flip`` (bit 2 transpose, bit 1 flip rows, bit 0 flip columns, applied in that order to
#: the output coordinates) → EXIF Orientation code.
LIBRAW_FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


def _check(code: int) -> int:
    if isinstance(code, bool) or int(code) != code or not 1 <= int(code) <= 8:
        raise ConfigError(f"EXIF orientation must be an integer 1..8, got {code!r}")
    return int(code)


def swaps_axes(code: int) -> bool:
    """Whether orientation ``code`` swaps height and width (5–8)."""
    return _check(code) >= 5


def orient(x: np.ndarray, code: int) -> np.ndarray:
    """Sensor-order ``x`` (``(..., H, W)``) → display order for EXIF orientation ``code`` (a view).

    1 as stored, 2 mirrored left-right, 3 rotated 180°, 4 mirrored top-bottom, 5 transposed, 6 rotated 90°
    clockwise, 7 transverse (anti-transposed), 8 rotated 90° counter-clockwise.
    """
    code = _check(code)
    if code == 1:
        return x
    if code == 2:
        return x[..., :, ::-1]
    if code == 3:
        return x[..., ::-1, ::-1]
    if code == 4:
        return x[..., ::-1, :]
    t = np.swapaxes(x, -1, -2)
    if code == 5:
        return t
    if code == 6:
        return t[..., :, ::-1]
    if code == 7:
        return t[..., ::-1, ::-1]
    return t[..., ::-1, :]  # 8


def unorient(x: np.ndarray, code: int) -> np.ndarray:
    """Inverse of :func:`orient`: display order back to sensor order."""
    code = _check(code)
    inverse = {6: 8, 8: 6}.get(code, code)  # every other orientation is its own inverse
    return orient(x, inverse)
