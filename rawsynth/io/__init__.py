"""Image and RAW I/O: a robust sRGB reader, bit-exact 16-bit PNG, a CFA DNG writer, and a rawpy-based reader
of DNG and camera RAW into rawsynth's structures.

Names are loaded on first use, so ``from rawsynth.io import write_png16`` does not import rawpy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LoadedImage": "images", "AlphaPolicy": "images", "DEFAULT_MAX_PIXELS": "images", "read_srgb": "images",
    "decode_srgb": "images",
    "encode_png16": "png16", "decode_png16": "png16", "write_png16": "png16", "read_png16": "png16",
    "write_dng": "dng", "encode_dng": "dng", "read_dng_tags": "dng",
    "RawImage": "raw", "read_raw": "raw",
    "atomic_output": "atomic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'rawsynth.io' has no attribute {name!r}")


def __dir__():
    return __all__
