"""``.npy`` members (format version 2): exact uint16 arrays that numpy-based decoders read as they are.
See ``docs/format.md``."""

from __future__ import annotations

import io

import numpy as np

from ..errors import InputError

__all__ = ["encode_npy", "decode_npy"]


def encode_npy(a: np.ndarray) -> bytes:
    """``.npy`` bytes of a uint16 array (stored little-endian, C order, format 1.0)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a, dtype="<u2"), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes, name: str = "<npy>") -> np.ndarray:
    """Decode ``.npy`` bytes into a native-order uint16 array (never unpickles).

    Raises:
        InputError: reason ``"corrupt field"``: not a ``.npy``, an object array, not uint16, or cut short.
    """
    try:
        a = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(name, "corrupt field", detail=f"not a readable .npy ({e})") from None
    if a.dtype.kind != "u" or a.dtype.itemsize != 2:
        raise InputError(name, "corrupt field", detail=f"expected a uint16 .npy, got {a.dtype}")
    return a.astype(np.uint16, copy=False)
