"""Photos with more than 8 bits per sample, which Pillow would truncate: 16-bit PNG/PPM through OpenCV, TIFF with
more than 8 bits or float samples through tifffile. See ``docs/io.md``."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import tifffile
from PIL import Image

from ..errors import InputError
from ._png import PngInfo
from .decoded import AlphaPolicy, LoadedImage, _check_size, _exif_orientation, _finish

__all__: list[str] = []


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
