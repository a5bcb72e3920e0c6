"""16-bit PNG for mosaics (DN) and linear RGB: bit-exact round trip, deterministic bytes, atomic writes.
See ``docs/io.md``."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError, ShapeError
from ._png import SIGNATURE, scan_png
from .atomic import atomic_output

__all__ = ["encode_png16", "decode_png16", "write_png16", "read_png16", "encode_png8", "PNG_COMPRESSION", "PngSettings",
           "PNG16_GREY", "PNG16_RGB", "PNG8_RGB_PARAMS"]

#: zlib level of every PNG rawsynth writes. With the Huffman-only and run-length strategies used below the level
#: changes neither the bytes nor the time (it only tunes LZ77's match search); it is fixed so the bytes are
#: deterministic. Trade-offs measured on 512² shards are in ``benchmarks/perf/RESULTS.md``.
PNG_COMPRESSION = 1

_FILTER_NONE, _FILTER_SUB = 0, 1


@dataclass(frozen=True)
class PngSettings:
    """How :func:`encode_png16` compresses one kind of image: a zlib strategy and one PNG row filter for
    every row (``0`` None, ``1`` Sub)."""

    strategy: int
    row_filter: int


#: 16-bit grey PNG (a noisy Bayer mosaic in DN): Huffman coding only, no row filter. Noise leaves LZ77 nothing
#: to match and byte-wise row filters make 16-bit noise less predictable: both the fastest and the smallest
#: setting on mosaics.
PNG16_GREY = PngSettings(zlib.Z_HUFFMAN_ONLY, _FILTER_NONE)
#: 16-bit RGB PNG (linear HQ): run-length matches on Sub-filtered rows (equal neighbours become zero runs):
#: ~4× faster than OpenCV's level 3 with adaptive filters (rawsynth's former setting), for the same size within
#: 1 %. zlib's default strategy on unfiltered rows gives 12 % smaller files at about twice the time.
PNG16_RGB = PngSettings(zlib.Z_RLE, _FILTER_SUB)
#: OpenCV ``imencode`` settings of an 8-bit RGB PNG (sRGB LQ/GT crops): run-length matches with the Paeth
#: filter, 3–6 % smaller and 1.5–2× faster than level 3 with adaptive filters on photos.
PNG8_RGB_PARAMS = (cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION, cv2.IMWRITE_PNG_STRATEGY,
                   cv2.IMWRITE_PNG_STRATEGY_RLE)
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11; older ones keep libpng's own filter choice
    PNG8_RGB_PARAMS += (cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH)

_GREY, _RGB = 0, 2  # PNG colour types rawsynth reads and writes
_COLOUR_TYPE_NAMES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def _check_array(array) -> np.ndarray:
    """Return ``array`` if it is a uint16 (either byte order, any layout) ``(H, W)`` or ``(H, W, 3)`` array, else
    raise :class:`ShapeError`."""
    if not isinstance(array, np.ndarray):
        raise ShapeError(f"png16: expected a numpy uint16 array, got {type(array).__name__}; "
                         "convert a tensor with t.cpu().numpy()")
    if array.dtype.kind != "u" or array.dtype.itemsize != 2:
        raise ShapeError(f"png16: expected dtype uint16, got {array.dtype}; convert floats in [0, 1] with "
                         "np.round(x * 65535).astype(np.uint16), or integer DN with x.astype(np.uint16)")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ShapeError(f"png16: expected shape (H, W) or (H, W, 3), got {array.shape}; "
                         "move channels last with np.moveaxis(x, 0, -1) and drop singleton/alpha channels")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ShapeError(f"png16: cannot encode an empty image of shape {array.shape}")
    return array


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def encode_png16(array: np.ndarray) -> bytes:
    """Encode a uint16 array as a 16-bit PNG.

    A minimal PNG (``IHDR``, one ``IDAT``, ``IEND``; no timestamp or other ancillary chunk), compressed with
    zlib at :data:`PNG_COMPRESSION` with the fixed settings :data:`PNG16_GREY` or :data:`PNG16_RGB`; any PNG
    reader decodes it.

    Args:
        array: ``(H, W)`` (grey, e.g. a mosaic in DN) or ``(H, W, 3)`` (RGB order) ``uint16``, any memory
            layout or byte order.

    Returns:
        The PNG file's bytes; identical arrays give identical bytes.

    Raises:
        ShapeError: wrong type, dtype or shape.
    """
    a = _check_array(array)
    h, w = a.shape[:2]
    grey = a.ndim == 2
    settings = PNG16_GREY if grey else PNG16_RGB
    bpp = 2 if grey else 6  # bytes per pixel
    rows = np.empty((h, 1 + w * bpp), np.uint8)  # each scanline: its filter byte, then big-endian samples
    rows[:, 0] = settings.row_filter
    if settings.row_filter == _FILTER_NONE:
        rows[:, 1:].view(">u2")[...] = a.reshape(h, -1)  # byte-swapped straight into the scanlines
    else:  # Sub: each byte minus the same byte of the pixel to its left (mod 256), the first pixel as is
        be = np.ascontiguousarray(a, dtype=">u2").reshape(h, -1).view(np.uint8)
        rows[:, 1:1 + bpp] = be[:, :bpp]
        np.subtract(be[:, bpp:], be[:, :-bpp], out=rows[:, 1 + bpp:])
    z = zlib.compressobj(PNG_COMPRESSION, zlib.DEFLATED, 15, 9, settings.strategy)
    idat = z.compress(rows) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, _GREY if grey else _RGB, 0, 0, 0)
    return b"".join((SIGNATURE, _chunk(b"IHDR", ihdr), _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))


def _png_header(data: bytes, name: str) -> tuple[int, int, int, int]:
    """Walk the PNG chunk list; return ``(width, height, bit_depth, colour_type)`` from IHDR.

    Raises :class:`InputError` for a non-PNG (``"not a 16-bit PNG"``), a chunk list that ends before IEND
    (``"truncated"``) or a chunk whose CRC does not match (``"unreadable"``).
    """
    if not data:
        raise InputError(name, "empty file", hint="re-write the file")
    if not data.startswith(SIGNATURE):
        if SIGNATURE.startswith(data):
            raise InputError(name, "truncated", detail="file ends inside the PNG signature")
        raise InputError(name, "not a 16-bit PNG", detail="no PNG signature",
                         hint="pass a 16-bit PNG written by rawsynth.io.png16.write_png16")
    info = scan_png(data)
    if info.fault == "truncated":
        raise InputError(name, "truncated", detail=info.detail)
    if info.fault is not None:
        raise InputError(name, "unreadable", detail=f"{info.detail} (corrupt file)")
    return info.width, info.height, info.bit_depth, info.color_type


def decode_png16(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode a 16-bit grey or RGB PNG.

    Args:
        data: the PNG file's bytes.
        name: what to call the data in error messages (a path, or ``"<bytes>"``).

    Returns:
        ``(H, W)`` uint16 for a grey PNG, ``(H, W, 3)`` uint16 in RGB order for an RGB PNG.

    Raises:
        InputError: reason ``"empty file"``, ``"truncated"``, ``"not a 16-bit PNG"`` (another format or
            bit depth), ``"unsupported mode"`` (16-bit with alpha) or ``"unreadable"`` (corrupt).
    """
    data = bytes(data)
    width, height, depth, ctype = _png_header(data, name)
    if depth != 16:
        raise InputError(name, "not a 16-bit PNG", detail=f"{depth}-bit {_COLOUR_TYPE_NAMES.get(ctype, ctype)}",
                         hint="rawsynth stores mosaics and linear RGB as 16-bit PNG; re-export at 16 bits")
    if ctype not in (_GREY, _RGB):
        raise InputError(name, "unsupported mode", detail=f"16-bit {_COLOUR_TYPE_NAMES.get(ctype, ctype)}",
                         hint="only 16-bit grey or RGB (no alpha) PNGs are supported; drop the alpha channel")
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    want = (height, width) if ctype == _GREY else (height, width, 3)
    if a is None or a.dtype != np.uint16 or a.shape != want:
        got = "nothing" if a is None else f"{a.dtype} {a.shape}"
        raise InputError(name, "unreadable", detail=f"OpenCV decoded {got}, expected uint16 {want}")
    if a.ndim == 3:
        a = np.ascontiguousarray(a[..., ::-1])  # OpenCV's BGR → RGB
    return a


def write_png16(path: str | os.PathLike, array: np.ndarray) -> None:
    """Atomically write ``array`` (see :func:`encode_png16`) to ``path``."""
    data = encode_png16(array)
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def read_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a 16-bit PNG written by :func:`write_png16` (or any 16-bit grey/RGB PNG).

    Returns:
        ``(H, W)`` or ``(H, W, 3)`` (RGB) uint16.

    Raises:
        InputError: missing or unreadable file (``"unreadable"``), or any reason of :func:`decode_png16`.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(path, "unreadable", detail=e.strerror or str(e)) from None
    return decode_png16(data, os.fspath(path))


def encode_png8(rgb: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint8 RGB (sRGB crops, report thumbnails) as an 8-bit PNG with the fixed settings
    :data:`PNG8_RGB_PARAMS`: the same pixels always give the same bytes.

    Raises:
        ShapeError: not an ``(H, W, 3)`` uint8 array.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ShapeError(f"expected an (H, W, 3) uint8 array, got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), PNG8_RGB_PARAMS)  # RGB → OpenCV's BGR
    if not ok:  # pragma: no cover - OpenCV only fails here on out-of-memory
        raise ShapeError(f"OpenCV could not encode an 8-bit PNG of shape {rgb.shape}")
    return buf.tobytes()
