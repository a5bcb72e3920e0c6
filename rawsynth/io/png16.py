"""16-bit PNG for mosaics (digital numbers) and linear RGB.

Arrays are ``uint16``: ``(H, W)`` for a Bayer mosaic in DN, ``(H, W, 3)`` for RGB in **R, G, B** order
(OpenCV's BGR order is swapped on the way in and out). A round trip is bit-exact, and the same array
always encodes to the same bytes (fixed compression level, no timestamp chunk). Writes are atomic:
the file is written next to its destination and moved into place with :func:`os.replace`, so a crash
never leaves a half-written PNG under the final name.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..errors import InputError, ShapeError
from ._png import SIGNATURE, scan_png
from .atomic import atomic_output

__all__ = ["encode_png16", "decode_png16", "write_png16", "read_png16"]

#: zlib level used for every PNG rawsynth writes (fixed so the bytes are deterministic).
PNG_COMPRESSION = 3

_GREY, _RGB = 0, 2  # PNG colour types rawsynth reads and writes
_COLOUR_TYPE_NAMES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def _check_array(array) -> np.ndarray:
    """Return ``array`` as a C-contiguous native-endian uint16 ``(H, W)`` or ``(H, W, 3)`` array, or raise."""
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
    return np.ascontiguousarray(array, dtype=np.uint16)


def encode_png16(array: np.ndarray) -> bytes:
    """Encode a uint16 array as a 16-bit PNG.

    Args:
        array: ``(H, W)`` (grey, e.g. a mosaic in DN) or ``(H, W, 3)`` (RGB order) ``uint16``.

    Returns:
        The PNG file's bytes; identical arrays give identical bytes.

    Raises:
        ShapeError: wrong type, dtype or shape.
    """
    a = _check_array(array)
    if a.ndim == 3:
        a = np.ascontiguousarray(a[..., ::-1])  # RGB → OpenCV's BGR
    ok, buf = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - OpenCV only fails here on out-of-memory
        raise ShapeError(f"png16: OpenCV could not encode an array of shape {a.shape}")
    return buf.tobytes()


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
