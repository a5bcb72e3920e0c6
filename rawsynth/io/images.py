"""Robust sRGB image reading: one image file (or its bytes) → ``(H, W, 3)`` float32 RGB in ``[0, 1]``.

:func:`read_srgb` reads a path, :func:`decode_srgb` decodes bytes (tar/webdataset shards, archives); both
return a :class:`LoadedImage` and raise only :class:`~rawsynth.errors.InputError` for a bad file, with a short
``reason`` a caller can record (``"empty file"``, ``"truncated"``, ``"not an image"``, ``"unreadable"``,
``"too large"``, ``"unsupported mode"``, ``"has alpha"``, ``"corrupt"``). Decoder exceptions never escape bare:
anything unexpected becomes reason ``"corrupt"`` chained to the original.

Formats and decoders:

* Pillow identifies every file from its header (format, mode, size, EXIF orientation) and decodes all 8-bit
  data: PNG, JPEG (and MPO), TIFF, WebP, BMP, GIF, PPM/PGM, TGA, JPEG 2000, QOI, SGI, PCX, ICO, AVIF where the
  Pillow build has it. Only these formats are tried (never EPS, whose plugin runs Ghostscript).
* Pillow truncates 16-bit colour to 8 bits, so data with more than 8 bits per sample goes elsewhere: 16-bit PNG
  and 16-bit PPM through OpenCV (``cv2.IMREAD_UNCHANGED``, BGR(A) reordered to RGB(A)); TIFF with more than
  8 bits or float samples through ``tifffile`` (raw samples; when a compression needs the optional
  ``imagecodecs`` package, e.g. LZW, OpenCV's libtiff decodes it instead). 16-bit grayscale PGM is taken
  from Pillow, which decodes it exactly.
* Unsigned integer samples are divided by ``2**bits − 1`` (255, 65535, 4095 for 12-bit TIFF, the PPM ``maxval``);
  float TIFF samples (``bit_depth`` 32, or 16/64) are taken as already-normalised sRGB values and clipped to
  ``[0, 1]`` (non-finite values → ``"corrupt"``).
* Grayscale is replicated to 3 channels; palette images are expanded; CMYK/YCbCr use Pillow's conversion
  (CMYK → RGB is Pillow's naive ``255 − C − K`` style conversion, not an ICC transform).
* EXIF orientation (tag 0x0112, values 1–8, from JPEG/MPO APP1, PNG ``eXIf``, WebP ``EXIF``, the TIFF IFD) is
  applied by one numpy helper on every decoder path, so the result is always upright. Missing, malformed or
  out-of-range orientation is treated as 1 (malformed EXIF never rejects an image).
* Multi-frame files (GIF, APNG, multi-page TIFF, MPO): frame 0 only.

Alpha policy (:class:`AlphaPolicy`): RGBA, LA, PA and palette/grayscale/RGB with ``tRNS`` colour-key transparency
are composited with *straight* (unassociated) alpha ``out = a·rgb + (1 − a)·bg`` over white (``bg = 1``, the
default, how browsers and viewers show such images on a white page) or black (``bg = 0``). Blending is done on
the sRGB-encoded values (as viewers do), not in linear light. TIFF associated (premultiplied) alpha uses
``out = rgb + (1 − a)·bg``. ``AlphaPolicy.ERROR`` raises ``InputError(reason="has alpha")`` when any pixel is
not fully opaque; an all-opaque alpha channel is dropped under every policy (``had_alpha`` still reports it).

Limits and non-goals:

* ICC profiles, PNG ``gAMA``/``cHRM``/``sRGB`` chunks and EXIF colour space are ignored: the samples are
  assumed to be sRGB-encoded already (a wide-gamut file is read as if it were sRGB).
* Size guard: ``width × height`` from the header is checked against ``max_pixels`` before any pixel is decoded
  (:data:`DEFAULT_MAX_PIXELS`). Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``) is left untouched: its
  warning is silenced locally because the check here is authoritative, its hard error (above twice its limit,
  ≈179 Mpx by default) becomes the same ``"too large"`` InputError, so ``max_pixels`` above that limit also
  needs ``PIL.Image.MAX_IMAGE_PIXELS`` raised by the application.
* Truncation: PNGs are checked for a complete chunk sequence up to ``IEND`` and TIFFs for strips/tiles inside
  the file before decoding; other formats rely on the decoder, so an application that sets Pillow's global
  ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` gets partially decoded JPEGs back instead of ``"truncated"``.
* :func:`read_srgb` reads the whole file into memory before looking at its header (the pixel limit bounds the
  decoded size, not the file size).
* Pillow's warnings are filtered with ``warnings.catch_warnings()``, which before Python 3.14 edits the
  process-wide filter list: decode in processes (the intended use) rather than many threads if that matters.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, InputError
from ._png import SIGNATURE as PNG_SIGNATURE
from ._png import PngInfo, scan_png

__all__ = ["LoadedImage", "AlphaPolicy", "DEFAULT_MAX_PIXELS", "read_srgb", "decode_srgb"]

DEFAULT_MAX_PIXELS: int = 2**27
"""Default pixel-count limit (≈134 Mpx, e.g. 16384×8192): larger than any camera JPEG in common use, small
enough that the decoded float32 result (12 bytes per pixel, ≈1.6 GB at the limit) cannot exhaust a worker's
memory by surprise. Checked on the header before decoding; pass ``max_pixels=`` to raise or lower it."""


class AlphaPolicy(str, Enum):
    """What to do with a transparent image (see the module docstring for the exact compositing formula).

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


# Formats Pillow may try, in this order of likelihood (never EPS: its plugin executes Ghostscript).
_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "WEBP", "BMP", "GIF", "PPM", "TGA", "JPEG2000", "QOI", "SGI", "PCX",
            "ICO", "AVIF")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_KNOWN_MAGIC = (PNG_SIGNATURE, b"\xff\xd8\xff", b"GIF8", b"BM", *_TIFF_MAGIC)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_RGB_MODES = frozenset({"RGB", "P", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"})
_I16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ORIENTATION = 0x0112


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
    """Read an image file as ``(H, W, 3)`` float32 sRGB in ``[0, 1]`` (see the module docstring).

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


# ---------------------------------------- dispatch


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
            # Our own max_pixels check (on the same header size) is authoritative; see the module docstring.
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


def _check_size(name: str, w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise InputError(name, "corrupt", f"header gives an empty image size {w}x{h}")
    n = int(w) * int(h)
    if n > max_pixels:
        raise InputError(name, "too large", f"{w}x{h} = {n} pixels > limit {max_pixels}",
                         hint="raise max_pixels if you trust the file")


# ---------------------------------------- Pillow path


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


# ---------------------------------------- PNG / PPM via OpenCV


def _cv2_decode(data: bytes, name: str, hw: tuple[int, int]) -> np.ndarray:
    """``cv2.imdecode(..., IMREAD_UNCHANGED)`` → ``(H, W)`` or ``(H, W, C)`` in RGB(A) order, checked against the
    header size ``hw`` (which also catches a decoder that applied an orientation on its own)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(name, "corrupt", "OpenCV could not decode the pixel data")
    if arr.shape[:2] != tuple(hw):
        raise InputError(name, "corrupt", f"decoded {arr.shape[1]}x{arr.shape[0]}, header says {hw[1]}x{hw[0]}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    return arr


def _decode_png16(data: bytes, im: Image.Image, png: PngInfo, name: str, policy: AlphaPolicy) -> LoadedImage:
    arr = _cv2_decode(data, name, (im.height, im.width))
    key = im.info.get("transparency")
    has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
    if key is not None and not has_alpha:  # tRNS colour key: OpenCV applies it to RGB but not to grayscale
        gray = arr.ndim == 2
        mask = (arr == key) if gray else np.all(arr == np.asarray(key, arr.dtype), axis=-1)
        a = np.where(mask, 0, 65535).astype(np.uint16)
        arr = np.stack([arr, a], axis=-1) if gray else np.concatenate([arr, a[..., None]], axis=-1)
    transparent = png.color_type in (4, 6) or key is not None
    orientation = _exif_orientation(png.exif) if png.exif is not None else 1
    return _finish(arr, 65535.0, False, orientation, policy, name, 16, "PNG", im.mode, transparent)


def _ppm_maxval(im: Image.Image) -> int:
    args = im.tile[0].args if im.tile else None
    if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], int):
        return args[1]
    return 255


# ---------------------------------------- TIFF > 8 bit


def _pil_tiff_bits(im: Image.Image) -> tuple[int, bool]:
    tags = im.tag_v2
    bits = tags.get(258, (1,))
    fmt = tags.get(339, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    fmt = fmt if isinstance(fmt, tuple) else (fmt,)
    return max(int(b) for b in bits), 3 in fmt


def _check_tiff_extent(name: str, tags, size: int) -> None:
    """Raise ``"truncated"`` when a strip or tile lies past the end of the data (``tags``: tag id → value)."""
    for off_tag, cnt_tag in ((273, 279), (324, 325)):
        offsets, counts = tags.get(off_tag), tags.get(cnt_tag)
        if offsets is None or counts is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        end = max((int(o) + int(c) for o, c in zip(offsets, counts)), default=0)
        if end > size:
            raise InputError(name, "truncated", f"TIFF image data ends at byte {end}, the file has {size}")


def _decode_tiff_hi(data: bytes, name: str, max_pixels: int, policy: AlphaPolicy,
                    pil_mode: str | None) -> LoadedImage:
    """TIFF with more than 8 bits per sample or float samples (or one Pillow cannot open) via tifffile."""
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception as e:
        raise InputError(name, "corrupt", f"TIFF header: {type(e).__name__}: {e}") from e
    with tif:
        page = tif.pages.first
        _check_size(name, page.imagewidth, page.imagelength, max_pixels)
        page_tags = {t.code: t.value for t in page.tags.values()}
        _check_tiff_extent(name, page_tags, len(data))
        photometric, spp, bits = int(page.photometric), int(page.samplesperpixel), int(page.bitspersample)
        kind = int(page.sampleformat)
        color = {1: 1, 2: 3}.get(photometric)
        extras = tuple(int(e) for e in page.extrasamples)
        alpha_kind = extras[0] if color is not None and spp > color and extras and extras[0] in (1, 2) else 0
        layout = ("L" if color == 1 else "RGB") + ("A" if alpha_kind else "")
        mode = pil_mode or f"{layout};{bits}{'F' if kind == 3 else ''}"
        if color is None or page.imagedepth > 1 or not (kind == 3 or (kind == 1 and bits <= 16)):
            raise InputError(name, "unsupported mode",
                             f"TIFF photometric {photometric}, {spp} x {bits}-bit samples, sample format {kind}",
                             hint="use grayscale or RGB with unsigned 8/16-bit or float samples")
        orientation = int(page_tags.get(274, 1)) if page_tags.get(274, 1) in range(1, 9) else 1
        nch = color + (1 if alpha_kind else 0)
        try:
            arr = page.asarray()
            if page.planarconfig == 2 and arr.ndim == 3:
                arr = np.moveaxis(arr, 0, -1)
            arr = arr[..., :nch] if arr.ndim == 3 else arr
        except Exception as e:  # e.g. LZW/JPEG compression needs imagecodecs: let libtiff (OpenCV) decode it
            arr = _tiff_via_cv2(data, tif, page, name, nch, e)
        if arr.ndim not in (2, 3) or arr.shape[:2] != (page.imagelength, page.imagewidth):
            raise InputError(name, "unsupported mode", f"TIFF page 0 decodes to shape {arr.shape}, expected "
                             f"({page.imagelength}, {page.imagewidth}[, samples])")
    scale = 1.0 if kind == 3 else float(2**bits - 1)
    return _finish(arr, scale, alpha_kind == 1, orientation, policy, name, bits, "TIFF", mode, bool(alpha_kind))


def _tiff_via_cv2(data: bytes, tif, page, name: str, nch: int, cause: Exception) -> np.ndarray:
    """Decode with OpenCV after neutralising the orientation tag (OpenCV's TIFF decoder applies it itself)."""
    buf = bytearray(data)
    tag = page.tags.get(274)
    if tag is not None and tag.count == 1 and tag.dtype in (3, 4):
        struct.pack_into(tif.byteorder + ("H" if tag.dtype == 3 else "I"), buf, tag.valueoffset, 1)
    try:
        arr = _cv2_decode(bytes(buf), name, (page.imagelength, page.imagewidth))
    except InputError as e:
        raise InputError(name, "corrupt", f"tifffile: {cause}; OpenCV: {e.detail}") from cause
    got = 1 if arr.ndim == 2 else arr.shape[2]
    if got < nch:
        raise InputError(name, "unsupported mode", f"OpenCV decoded {got} of {nch} channels; tifffile: {cause}",
                         hint="pip install imagecodecs so tifffile can decode this compression")
    return arr[..., :nch] if arr.ndim == 3 else arr


# ---------------------------------------- common tail


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
