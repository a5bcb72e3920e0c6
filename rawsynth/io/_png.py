"""PNG chunk walking shared by the 16-bit PNG codec and the sRGB reader (headers and CRCs, no decompression).
See ``docs/io.md``."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngInfo:
    """What the chunk list of a PNG says, and the first structural fault in it.

    Attributes:
        width, height, bit_depth, color_type: from IHDR (0 where IHDR is missing).
        exif: the ``eXIf`` chunk's payload, if any.
        complete: the chunk list reaches ``IEND`` inside the data with no fault.
        fault: ``None``, ``"truncated"`` (the data ends early) or ``"corrupt"`` (bad CRC, bad IHDR).
        detail: a sentence about the fault, for error messages.
    """

    width: int
    height: int
    bit_depth: int
    color_type: int
    exif: bytes | None
    complete: bool
    fault: str | None
    detail: str


def scan_png(data: bytes) -> PngInfo:
    """Walk the chunk list of ``data`` (which must start with the PNG signature) up to ``IEND``."""
    if not data.startswith(SIGNATURE):
        raise ValueError("scan_png needs data starting with the PNG signature")
    pos, n = len(SIGNATURE), len(data)
    w = h = depth = ctype = 0
    exif = None

    def result(fault: str | None, detail: str = "") -> PngInfo:
        return PngInfo(w, h, depth, ctype, exif, fault is None, fault, detail)

    first = True
    while True:
        if pos + 8 > n:
            return result("truncated", f"file ends at byte {n} before the IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            return result("truncated", f"chunk {kind!r} needs {end} bytes, the file has {n}")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            return result("corrupt", f"CRC mismatch in chunk {kind!r}")
        if first:
            if kind != b"IHDR" or length != 13:
                return result("corrupt", "first chunk is not a valid IHDR")
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            first = False
        elif kind == b"eXIf":
            exif = body
        elif kind == b"IEND":
            return result(None)
        pos = end
