"""What a decoded sRGB photo is (:class:`LoadedImage`, :class:`AlphaPolicy`, the pixel limit) and the tail every
decoder shares: EXIF orientation, scaling to ``[0, 1]``, alpha compositing. See ``docs/io.md``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image

from ..errors import InputError

__all__ = ["LoadedImage", "AlphaPolicy", "DEFAULT_MAX_PIXELS"]


DEFAULT_MAX_PIXELS: int = 2**27
"""Default pixel-count limit (≈134 Mpx, e.g. 16384×8192): larger than any camera JPEG in common use, small
enough that the decoded float32 result (12 bytes per pixel, ≈1.6 GB at the limit) cannot exhaust a worker's
memory by surprise. Checked on the header before decoding; pass ``max_pixels=`` to raise or lower it."""


class AlphaPolicy(str, Enum):
    """What to do with a transparent image (the compositing formula: ``docs/io.md``).

    * ``WHITE``: composite with straight alpha over a white background (the default).
    * ``BLACK``: composite over black.
    * ``ERROR``: raise ``InputError(reason="has alpha")`` if any pixel is not fully opaque.
    """

    WHITE = "white"
    BLACK = "black"
    ERROR = "error"


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One decoded image.

    Attributes:
        image: ``(H, W, 3)`` float32 C-contiguous RGB in ``[0, 1]`` (sRGB-encoded, upright after EXIF
            orientation, alpha composited).
        bit_depth: bits per sample of the source data: 8 (also for 1/2/4-bit and palette images), 16,
            12 for 12-bit TIFF, 32 for float32 TIFF.
        path: the file path (or the ``name`` given to :func:`decode_srgb`).
        format: Pillow's format name (``"PNG"``, ``"JPEG"``, ``"MPO"``, ``"TIFF"``, ``"WEBP"``, ...).
        mode: the source mode before conversion as Pillow reports it (``"RGB"``, ``"RGBA"``, ``"L"``,
            ``"P"``, ``"CMYK"``, ``"I;16"``, ...); Pillow reports 16-bit colour PNG/TIFF as ``"RGB"``/``"RGBA"``,
            see ``bit_depth``. For TIFFs Pillow cannot open (float RGB) it is e.g. ``"RGB;32F"``.
        had_alpha: the source has an alpha channel or colour-key transparency (composited away, see
            :class:`AlphaPolicy`).
    """

    image: np.ndarray
    bit_depth: int
    path: str
    format: str
    mode: str
    had_alpha: bool


_ORIENTATION = 0x0112


def _check_size(name: str, w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise InputError(name, "corrupt", f"header gives an empty image size {w}x{h}")
    n = int(w) * int(h)
    if n > max_pixels:
        raise InputError(name, "too large", f"{w}x{h} = {n} pixels > limit {max_pixels}",
                         hint="raise max_pixels if you trust the file")


def _exif_orientation(source) -> int:
    """EXIF orientation 1..8 of a Pillow image or of a raw EXIF (TIFF-structured) block; 1 when absent/invalid."""
    try:
        if isinstance(source, (bytes, bytearray)):
            exif = Image.Exif()
            exif.load(bytes(source))
        else:
            exif = source.getexif()
        value = exif.get(_ORIENTATION, 1)
    except Exception:  # malformed EXIF never rejects an otherwise good image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` to ``(H, W[, C])`` so the result is upright (a view, no copy).

    Same mapping as ``PIL.ImageOps.exif_transpose``: 2 mirror left-right, 3 rotate 180°, 4 mirror top-bottom,
    5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise.
    """
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return np.rot90(arr, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _finish(arr: np.ndarray, scale: float, premultiplied: bool, orientation: int, policy: AlphaPolicy, name: str,
            bit_depth: int, fmt: str, mode: str, had_alpha: bool) -> LoadedImage:
    """Integer or float samples ``(H, W)``/``(H, W, C)`` (C = 1 L, 2 LA, 3 RGB, 4 RGBA) → :class:`LoadedImage`.

    Orients, scales by ``1/scale`` to float32, composites alpha per ``policy`` and replicates gray to RGB.
    """
    arr = _orient(arr, orientation)
    if arr.ndim == 2:
        arr = arr[..., None]
    x = arr.astype(np.float32, order="C")
    if arr.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise InputError(name, "corrupt", "non-finite float samples")
        np.clip(x, 0.0, 1.0, out=x)
    else:
        x /= np.float32(scale)
    c = x.shape[2]
    if c in (2, 4):
        color, a = x[..., :c - 1], x[..., c - 1:]
        if a.min() < 1.0:
            if policy is AlphaPolicy.ERROR:
                raise InputError(name, "has alpha", f"{fmt} mode {mode!r} has transparent pixels",
                                 hint="use alpha='white' or alpha='black' to composite it")
            bg = np.float32(1.0 if policy is AlphaPolicy.WHITE else 0.0)
            color = (color if premultiplied else a * color) + (np.float32(1.0) - a) * bg
            np.clip(color, 0.0, 1.0, out=color)
        x = color
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return LoadedImage(np.ascontiguousarray(x, dtype=np.float32), int(bit_depth), name, fmt, mode, had_alpha)
