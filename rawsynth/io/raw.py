"""Read DNG and camera RAW files through rawpy (LibRaw) into rawsynth's structures.

Only the four 2×2 Bayer layouts of R, G, B are supported; X-Trans, Quad Bayer, Foveon, linear
(demosaicked) DNG, monochrome and CMYG sensors raise :class:`~rawsynth.errors.UnsupportedCFAError`.
Every failure to read raises :class:`~rawsynth.errors.InputError` with one of the reasons
``"empty file"``, ``"truncated"``, ``"not a RAW file"``, ``"unreadable"`` or ``"too large"``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import rawpy
import tifffile

from ..errors import ConfigError, InputError, UnsupportedCFAError
from ..isp.params import ISPParams, rgb2cam_from_xyz2cam
from ..mns.cfa import Pattern
from ..mns.sensor import SensorParams
from .dng import ILLUMINANT_D65, LIBRAW_MIN_SIZE, read_dng_tags

__all__ = ["RawImage", "read_raw"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_UNSUPPORTED_HINT = "rawsynth handles 2x2 Bayer (RGGB/BGGR/GRBG/GBRG) sensors only; skip this file"


@dataclass(frozen=True, eq=False)
class RawImage:
    """One RAW image as rawsynth uses it.

    Attributes:
        mosaic: ``(H, W)`` uint16 DN of the visible area (LibRaw's ``raw_image_visible``), ``H`` and ``W``
            even (an odd last row/column is dropped and noted in :attr:`notes`). Values are as stored:
            under the black level and, for some cameras, above ``white_level``.
        pattern: Bayer layout of ``mosaic``'s top-left 2×2 block.
        sensor: ``bit_depth = ceil(log2(white + 1))`` (clamped to 8..16), ``black_level`` (the rounded mean
            of the per-channel levels when they differ), ``white_level``.
        black_level_per_channel: LibRaw's black level per colour, indexed like rawpy's ``color_desc``
            (``R, G, B, G2`` for ``b"RGBG"``).
        isp: colour matrix and white balance of the file (``rgb_gain = 2**BaselineExposure`` for a DNG,
            else 1), or ``None`` when the file has no colour matrix (unknown camera) or no white balance.
        iso: ISO speed, or ``None`` when the file does not record it.
        path: the file read.
        notes: human-readable remarks on adjustments made while reading (crop to even size, differing
            black levels, ignored metadata).
    """

    mosaic: np.ndarray
    pattern: Pattern
    sensor: SensorParams
    black_level_per_channel: tuple[int, int, int, int]
    isp: ISPParams | None
    iso: float | None
    path: str
    notes: tuple[str, ...] = ()

    def normalized(self) -> np.ndarray:
        """``(H, W)`` float32 ``(mosaic − black) / (white − black)`` (not clipped: read noise dips below 0)."""
        s = self.sensor
        return ((self.mosaic.astype(np.float32) - np.float32(s.black_level)) / np.float32(s.range)).astype(np.float32)


# --------------------------------------------------------------------------------------------- helpers


def _check_file(path: str) -> int:
    """Size of ``path``, or :class:`InputError` for a missing, non-regular or empty file."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise InputError(path, "unreadable", detail=e.strerror or str(e), hint="check the path") from None
    if not os.path.isfile(path):
        raise InputError(path, "unreadable", detail="not a regular file")
    if st.st_size == 0:
        raise InputError(path, "empty file", hint="the file was not fully copied; re-copy it")
    return st.st_size


def _dng_tags(path: str) -> dict | None:
    """DNG tags of a TIFF-based file with ``DNGVersion``, or ``None`` for anything else (or unreadable tags,
    which LibRaw then judges)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) not in _TIFF_MAGIC:
                return None
    except OSError as e:
        raise InputError(path, "unreadable", detail=e.strerror or str(e)) from None
    try:
        return read_dng_tags(path)
    except InputError:
        return None


def _check_dng(path: str, tags: dict) -> None:
    """Reject a DNG whose raw data runs past the end of the file (LibRaw only reports a generic I/O error
    for those) or whose CFA is not a 2×2 R, G, G, B layout, before LibRaw sees it."""
    offsets = tags.get("StripOffsets", tags.get("TileOffsets", ()))
    counts = tags.get("StripByteCounts", tags.get("TileByteCounts", ()))
    if offsets and counts:
        end = max(o + c for o, c in zip(offsets, counts, strict=False))
        if end > tags["file_size"]:
            raise InputError(path, "truncated", detail=f"raw image data needs {end} bytes, the file has "
                             f"{tags['file_size']}", hint="the file was cut short; re-copy or re-export it")
    dim = tags.get("CFARepeatPatternDim")
    if dim is not None and tuple(dim) != (2, 2):
        raise UnsupportedCFAError(path, "unsupported CFA", detail=f"{dim[0]}x{dim[1]} CFA repeat pattern "
                                  "(X-Trans is 6x6, Quad Bayer 4x4)", hint=_UNSUPPORTED_HINT)
    cfa = tags.get("CFAPattern")
    if dim is not None and cfa is not None and tags.get("CFAPlaneColor", (0, 1, 2)) == (0, 1, 2) \
            and sorted(cfa) != [0, 1, 1, 2]:
        raise UnsupportedCFAError(path, "unsupported CFA", detail=f"CFAPattern {cfa} is not one R, two G and one B",
                                  hint=_UNSUPPORTED_HINT)


_LIBRAW_REASONS = (  # (exception class name, reason), most specific first
    ("LibRawFileUnsupportedError", "not a RAW file"),
    ("LibRawIOError", "truncated"),
    ("LibRawTooBigError", "too large"),
    ("LibRawDataError", "unreadable"),
)


def _libraw_error(path: str, e: Exception, tags: dict | None = None) -> InputError:
    """Map a rawpy exception to an :class:`InputError`; ``tags`` are the file's DNG tags, if it is a DNG."""
    reason = next((r for cls_name, r in _LIBRAW_REASONS
                   if isinstance(e, getattr(rawpy, cls_name, ()))), "unreadable")
    detail = f"LibRaw: {type(e).__name__}: {e}"
    hints = {"not a RAW file": "pass a DNG or a camera RAW file LibRaw supports",
             "truncated": "the file ends early or cannot be read; re-copy it"}
    if reason == "not a RAW file" and tags is not None:  # a DNG, but not one LibRaw accepts
        reason = "unreadable"
        h, w = tags.get("ImageLength", 0), tags.get("ImageWidth", 0)
        if 0 < min(h, w) < LIBRAW_MIN_SIZE:
            detail = f"{h}x{w} DNG: LibRaw refuses raw images under {LIBRAW_MIN_SIZE} pixels on a side"
            hints["unreadable"] = f"write mosaics of at least {LIBRAW_MIN_SIZE}x{LIBRAW_MIN_SIZE}"
        else:
            detail = "LibRaw does not support this DNG (" + detail + ")"
    return InputError(path, reason, detail=detail, hint=hints.get(reason))


def _pattern(path: str, raw) -> Pattern:
    """The Bayer :class:`Pattern` of ``raw_image_visible``, or :class:`UnsupportedCFAError`."""
    desc = bytes(raw.color_desc).decode("ascii", "replace")
    try:
        rp = raw.raw_pattern
    except NotImplementedError as e:  # rawpy: Leaf 16x16, unusual LibRaw 'filters' codes
        raise UnsupportedCFAError(path, "unsupported CFA", detail=str(e), hint=_UNSUPPORTED_HINT) from None
    if rp is None:
        what = "monochrome sensor" if raw.num_colors == 1 else "no CFA (Foveon or linear/demosaicked DNG)"
        raise UnsupportedCFAError(path, "unsupported CFA", detail=what, hint=_UNSUPPORTED_HINT)
    if rp.shape != (2, 2):
        kind = {(6, 6): "X-Trans 6x6", (4, 4): "4x4 (Quad Bayer or similar)"}.get(rp.shape, f"{rp.shape} CFA")
        raise UnsupportedCFAError(path, "unsupported CFA", detail=kind, hint=_UNSUPPORTED_HINT)
    # raw_colors_visible is aligned with raw_image_visible whatever the sensor margins.
    colors = raw.raw_colors_visible
    block = colors[:2, :2]
    letters = "".join(desc[int(c)] if int(c) < len(desc) else "?" for c in block.ravel())
    if sorted(letters) != ["B", "G", "G", "R"] or raw.num_colors not in (3, 4):
        raise UnsupportedCFAError(path, "unsupported CFA", detail=f"2x2 block {letters!r} (colours {desc!r})",
                                  hint=_UNSUPPORTED_HINT)
    h, w = colors.shape
    tiled = np.tile(block, ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    if not np.array_equal(colors, tiled):
        raise UnsupportedCFAError(path, "unsupported CFA", detail="colour layout is not 2x2-periodic",
                                  hint=_UNSUPPORTED_HINT)
    return Pattern(letters)


def _sensor(path: str, raw, notes: list[str]) -> tuple[SensorParams, tuple[int, int, int, int]]:
    per = tuple(int(v) for v in raw.black_level_per_channel)
    per = (per + (per[-1],) * 4)[:4]
    used = per[:3] if raw.num_colors == 3 and per[3] == 0 and per[1] != 0 else per  # G2 unset: ignore it
    black = int(round(float(np.mean(used))))
    if len(set(used)) > 1:
        notes.append(f"per-channel black levels {per} differ; sensor.black_level is their rounded mean {black}")
    white = int(raw.white_level)
    bits = min(16, max(8, math.ceil(math.log2(white + 1)))) if white > 0 else 16
    try:
        return SensorParams(bits, black, white), per  # type: ignore[return-value]
    except ConfigError as e:
        raise InputError(path, "unreadable", detail=f"implausible levels: {e}") from None


def _white_balance(raw, notes: list[str]) -> tuple[float, float] | None:
    """``(red_gain, blue_gain)`` relative to green: the camera's as-shot balance, else its daylight one."""
    for name in ("camera_whitebalance", "daylight_whitebalance"):
        wb = [float(v) for v in getattr(raw, name)]
        if len(wb) >= 3 and all(math.isfinite(v) and v > 0 for v in wb[:3]):
            if name != "camera_whitebalance":
                notes.append("no as-shot white balance; used the camera's daylight balance")
            return wb[0] / wb[1], wb[2] / wb[1]
    return None


def _xyz2cam(raw, tags: dict | None) -> np.ndarray | None:
    """XYZ → camera ``(3, 3)``: the DNG's D65 ``ColorMatrix`` when there is one (LibRaw leaves
    ``rgb_xyz_matrix`` empty for DNGs), else LibRaw's ``rgb_xyz_matrix[:3]`` (its camera table);
    ``None`` when unknown."""
    if tags:
        pairs = [(tags.get(f"ColorMatrix{i}"), tags.get(f"CalibrationIlluminant{i}")) for i in (1, 2)]
        pairs = [(m, ill) for m, ill in pairs if m is not None and m.shape == (3, 3)]
        d65 = [m for m, ill in pairs if ill == ILLUMINANT_D65]
        chosen = d65[0] if d65 else (pairs[-1][0] if pairs else None)  # ColorMatrix2 is usually D65
        if chosen is not None and np.any(chosen):
            return chosen
    m = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    return m if np.any(m) else None


def _isp(raw, tags: dict | None, notes: list[str]) -> ISPParams | None:
    xyz2cam = _xyz2cam(raw, tags)
    if xyz2cam is None:
        notes.append("no colour matrix (unknown camera): isp is None")
        return None
    wb = _white_balance(raw, notes)
    if wb is None:
        notes.append("no white balance in the file: isp is None")
        return None
    exposure = (tags or {}).get("BaselineExposure", 0.0)
    rgb_gain = 2.0 ** exposure if math.isfinite(exposure) else 1.0
    try:
        return ISPParams.from_rgb2cam(rgb2cam_from_xyz2cam(xyz2cam), rgb_gain, *wb)
    except ConfigError as e:
        notes.append(f"unusable colour metadata ({e}): isp is None")
        return None


def _tiff_iso(path: str) -> float | None:
    """Best-effort ISO from a TIFF-based RAW's EXIF (NEF, CR2, ARW, PEF, ...); ``None`` on any failure."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            iso = page.tags.get(34855)
            if iso is None and page.tags.get(34665) is not None:
                exif = page.tags[34665].value
                iso = exif.get("ISOSpeedRatings", exif.get("PhotographicSensitivity"))
            else:
                iso = iso.value if iso is not None else None
            if isinstance(iso, (tuple, list)):
                iso = iso[0]
            return float(iso) if iso else None
    except Exception:  # noqa: BLE001 - best effort: any failure means "unknown"
        return None


def _iso(path: str, raw, tags: dict | None) -> float | None:
    if tags and tags.get("ISOSpeedRatings"):
        return float(tags["ISOSpeedRatings"])
    iso = float(raw.other.iso_speed) if hasattr(raw, "other") else 0.0
    if math.isfinite(iso) and iso > 0:
        return iso
    return None if tags is not None else _tiff_iso(path)


def _mosaic(raw, notes: list[str]) -> np.ndarray:
    m = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)  # copy: LibRaw frees its buffer on close
    h, w = m.shape
    if h % 2 or w % 2:
        notes.append(f"visible area {h}x{w} cropped to {h - h % 2}x{w - w % 2} (whole 2x2 Bayer blocks)")
        m = np.ascontiguousarray(m[:h - h % 2, :w - w % 2])
    return m


# --------------------------------------------------------------------------------------------- public


def read_raw(path: str | os.PathLike) -> RawImage:
    """Read a Bayer DNG or camera RAW file.

    Args:
        path: any file LibRaw reads (DNG, CR2, NEF, ARW, ...).

    Returns:
        A :class:`RawImage`.

    Raises:
        InputError: missing/unreadable (``"unreadable"``), empty (``"empty file"``), cut short
            (``"truncated"``), not a RAW file (``"not a RAW file"``), or too large for LibRaw (``"too large"``).
        UnsupportedCFAError: anything but a 2×2 R/G/B Bayer layout.
    """
    name = os.fspath(path)
    _check_file(name)
    tags = _dng_tags(name)
    if tags is not None:
        _check_dng(name, tags)
    notes: list[str] = []
    try:
        raw = rawpy.imread(name)
    except rawpy.LibRawError as e:
        raise _libraw_error(name, e, tags) from None
    except OSError as e:
        raise InputError(name, "unreadable", detail=e.strerror or str(e)) from None
    with raw:
        try:
            pattern = _pattern(name, raw)
            mosaic = _mosaic(raw, notes)
            sensor, per = _sensor(name, raw, notes)
            isp = _isp(raw, tags, notes)
            iso = _iso(name, raw, tags)
        except rawpy.LibRawError as e:
            raise _libraw_error(name, e, tags) from None
    for note in notes:
        if "cropped" in note:
            warnings.warn(f"{name}: {note}", stacklevel=2)
    return RawImage(mosaic, pattern, sensor, per, isp, iso, name, tuple(notes))
