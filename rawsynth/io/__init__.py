"""Image and RAW I/O: the sRGB reader, 16-bit PNG, the DNG writer and the DNG/camera RAW reader (names load on
first use). See ``docs/io.md``."""

from __future__ import annotations

from .._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from .atomic import atomic_output
    from .dng import encode_dng, read_dng_tags, write_dng
    from .images import DEFAULT_MAX_PIXELS, AlphaPolicy, LoadedImage, decode_srgb, read_srgb
    from .png16 import decode_png16, encode_png16, read_png16, write_png16
    from .raw import RawImage, read_raw

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LoadedImage": "images", "AlphaPolicy": "images", "DEFAULT_MAX_PIXELS": "images", "read_srgb": "images",
    "decode_srgb": "images",
    "encode_png16": "png16", "decode_png16": "png16", "write_png16": "png16", "read_png16": "png16",
    "write_dng": "dng", "encode_dng": "dng", "read_dng_tags": "dng",
    "RawImage": "raw", "read_raw": "raw",
    "atomic_output": "atomic",
})
