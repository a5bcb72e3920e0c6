"""Robust sRGB photo reading: a file (:func:`read_srgb`) or its bytes (:func:`decode_srgb`) → ``(H, W, 3)`` float32
in ``[0, 1]``, every failure an :class:`~rawsynth.errors.InputError` with a ``reason``. See ``docs/io.md``."""

from __future__ import annotations

import io
import os
import warnings
from functools import lru_cache

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, InputError
from ._png import SIGNATURE as PNG_SIGNATURE
from ._png import scan_png
from .decoded import _orient  # noqa: F401  (its old home; tests/io reach it here)
from .decoded import DEFAULT_MAX_PIXELS, AlphaPolicy, LoadedImage, _check_size, _exif_orientation, _finish
from .highbit import _check_tiff_extent, _cv2_decode, _decode_png16, _decode_tiff_hi, _pil_tiff_bits, _ppm_maxval

__all__ = ["LoadedImage", "AlphaPolicy", "DEFAULT_MAX_PIXELS", "read_srgb", "decode_srgb"]


# Formats Pillow may try, in this order of likelihood (never EPS: its plugin executes Ghostscript).
_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "WEBP", "BMP", "GIF", "PPM", "TGA", "JPEG2000", "QOI", "SGI", "PCX",
            "ICO", "AVIF")


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


_KNOWN_MAGIC = (PNG_SIGNATURE, b"\xff\xd8\xff", b"GIF8", b"BM", *_TIFF_MAGIC)


_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


_RGB_MODES = frozenset({"RGB", "P", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"})


_I16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@lru_cache(maxsize=1)
def _pillow_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in _FORMATS if f in Image.OPEN)


def _policy(alpha) -> AlphaPolicy:
    try:
        return AlphaPolicy(alpha)
    except ValueError:
        raise ConfigError(f"alpha must be one of {[p.value for p in AlphaPolicy]}, got {alpha!r}") from None


def _check_max_pixels(max_pixels) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive int, got {max_pixels!r}")
    return int(max_pixels)


def read_srgb(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
              alpha: AlphaPolicy | str = AlphaPolicy.WHITE) -> LoadedImage:
    """Read an image file as ``(H, W, 3)`` float32 sRGB in ``[0, 1]`` (formats, alpha, limits: ``docs/io.md``).

    Args:
        path: the file.
        max_pixels: refuse images with more than this many pixels (checked on the header, before decoding).
        alpha: an :class:`AlphaPolicy` or its value (``"white"``, ``"black"``, ``"error"``).

    Raises:
        InputError: the file is missing/unreadable/a directory (``"unreadable"``), empty, truncated, not an
            image, too large, of an unsupported mode, transparent under ``AlphaPolicy.ERROR``, or corrupt.
        ConfigError: ``max_pixels`` or ``alpha`` is invalid.
    """
    max_pixels, policy = _check_max_pixels(max_pixels), _policy(alpha)
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(name, "unreadable", f"{type(e).__name__}: {e.strerror or e}") from e
    return decode_srgb(data, name=name, max_pixels=max_pixels, alpha=policy)


def decode_srgb(data: bytes | bytearray | memoryview, *, name: str = "<bytes>",
                max_pixels: int = DEFAULT_MAX_PIXELS, alpha: AlphaPolicy | str = AlphaPolicy.WHITE) -> LoadedImage:
    """Decode an encoded image held in memory; same result and errors as :func:`read_srgb`.

    Args:
        data: the file's bytes.
        name: how errors and :attr:`LoadedImage.path` name the source (e.g. ``"shard-0003.tar:img_17.png"``).
        max_pixels: as in :func:`read_srgb`.
        alpha: as in :func:`read_srgb`.
    """
    max_pixels, policy = _check_max_pixels(max_pixels), _policy(alpha)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    data = bytes(data)
    name = os.fspath(name)
    if not data:
        raise InputError(name, "empty file")
    try:
        return _decode(data, name, max_pixels, policy)
    except (InputError, MemoryError):
        raise
    except Exception as e:
        raise InputError(name, "corrupt", f"{type(e).__name__}: {e}") from e


def _decode(data: bytes, name: str, max_pixels: int, policy: AlphaPolicy) -> LoadedImage:
    im = _open_pillow(data, name)
    if im is None:
        if data.startswith(_TIFF_MAGIC):
            return _decode_tiff_hi(data, name, max_pixels, policy, None)
        raise _unidentified(data, name)
    with im:
        fmt, mode = im.format or "?", im.mode
        _check_size(name, *im.size, max_pixels)
        if fmt == "PNG":
            png = scan_png(data)
            if not png.complete:
                raise InputError(name, png.fault, f"PNG: {png.detail}")
            if png.bit_depth == 16:
                return _decode_png16(data, im, png, name, policy)
        elif fmt == "TIFF":
            bits, floating = _pil_tiff_bits(im)
            if bits > 8 or floating:
                return _decode_tiff_hi(data, name, max_pixels, policy, mode)
            _check_tiff_extent(name, im.tag_v2, len(data))
        elif fmt == "PPM" and mode == "RGB" and _ppm_maxval(im) > 255:
            maxval = _ppm_maxval(im)
            arr = _cv2_decode(data, name, (im.height, im.width))
            return _finish(arr, float(maxval), False, 1, policy, name, maxval.bit_length(), fmt, mode, False)
        return _decode_pillow(im, name, policy)


def _open_pillow(data: bytes, name: str) -> Image.Image | None:
    """Open the header with Pillow (no pixel decoding); ``None`` if no allowed format recognises it."""
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check (on the same header size) is authoritative; see docs/io.md.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_pillow_formats())
    except Image.DecompressionBombError as e:
        raise InputError(name, "too large", str(e),
                         hint="raise max_pixels and PIL.Image.MAX_IMAGE_PIXELS if you trust the file") from e
    except UnidentifiedImageError:
        return None
    except Exception as e:  # a recognised format whose header is broken (OSError, SyntaxError, struct.error, ...)
        if data.startswith(_TIFF_MAGIC):
            return None  # tifffile gets a second look
        raise _unidentified(data, name, e) from e


def _unidentified(data: bytes, name: str, cause: Exception | None = None) -> InputError:
    """Classify bytes no allowed Pillow format could open: truncated / corrupt known format, or not an image."""
    why = f"{type(cause).__name__}: {cause}" if cause is not None else ""
    if data.startswith(PNG_SIGNATURE) and not (png := scan_png(data)).complete:
        return InputError(name, png.fault, f"PNG: {png.detail}")
    if data.startswith(b"\xff\xd8\xff") and b"\xff\xd9" not in data:
        return InputError(name, "truncated", "JPEG without an end-of-image marker")
    if cause is not None or data.startswith(_KNOWN_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return InputError(name, "corrupt", why or "the file starts like an image but its header cannot be parsed")
    head = data[:16]
    return InputError(name, "not an image", f"unrecognised header {head!r}; formats tried: {', '.join(_FORMATS)}")


def _decode_pillow(im: Image.Image, name: str, policy: AlphaPolicy) -> LoadedImage:
    """8-bit data (and Pillow's exact 16-bit grayscale modes) through Pillow."""
    fmt, mode = im.format or "?", im.mode
    _load(im, name)
    orientation = _exif_orientation(im)
    transparent = mode in _ALPHA_MODES or "transparency" in im.info
    if mode in _I16_MODES or (mode == "I" and fmt == "PPM"):  # PGM maxval > 255: Pillow scales to 0..65535
        arr = np.asarray(im)
        return _finish(arr, 65535.0, False, orientation, policy, name, 16, fmt, mode, False)
    if mode in ("1", "L") and not transparent:
        target = "L"
    elif mode in ("LA", "La"):
        target = "LA"
    elif mode in _RGB_MODES or mode in _ALPHA_MODES or mode in ("1", "L"):
        target = "RGBA" if transparent else "RGB"
    else:
        raise InputError(name, "unsupported mode", f"{fmt} mode {mode!r}",
                         hint="convert it to 8/16-bit RGB, grayscale or palette")
    try:
        conv = im if mode == target else im.convert(target)
    except ValueError as e:
        raise InputError(name, "unsupported mode", f"{fmt} mode {mode!r}: {e}") from e
    arr = np.asarray(conv, dtype=np.uint8)
    return _finish(arr, 255.0, False, orientation, policy, name, 8, fmt, mode, transparent)


def _load(im: Image.Image, name: str) -> None:
    """Decode the pixels, turning Pillow's truncation and size complaints into InputError.

    A PNG's chunk structure was already verified complete, so a broken PNG data stream is ``"corrupt"``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(name, "too large", str(e), hint="raise max_pixels if you trust the file") from e
    except OSError as e:
        msg = str(e)
        broken = "broken data stream" in msg and im.format != "PNG"
        if "truncated" in msg or broken or "unexpected end" in msg.lower():
            raise InputError(name, "truncated", msg) from e
        raise InputError(name, "corrupt", f"{type(e).__name__}: {msg}") from e
