"""Read DNG and camera RAW (2×2 Bayer only) through rawpy/LibRaw into a :class:`RawImage`: the mosaic in display
order, per-sample black, white level, colour. See ``docs/io.md``."""

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
from .dng_read import ILLUMINANT_D65, LIBRAW_MIN_SIZE, read_dng_tags
from .dng_color import isp_from_dng_tags
from .orientation import LIBRAW_FLIP_TO_EXIF, orient

__all__ = ["RawImage", "read_raw"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
#: TIFF Compression codes of DNG raw data LibRaw decodes: none, lossless JPEG, lossy JPEG (Deflate, 8, is only
#: for floating-point data, which rawsynth does not read; JPEG XL, 52546, LibRaw cannot decode).
_DNG_COMPRESSIONS = (1, 7, 34892)
_DNG_COMPRESSIONS_TEXT = "1 uncompressed, 7 lossless JPEG and 34892 lossy JPEG"
_UNSUPPORTED_HINT = "rawsynth handles 2x2 Bayer (RGGB/BGGR/GRBG/GBRG) sensors only; skip this file"


@dataclass(frozen=True, eq=False)
class RawImage:
    """One RAW image as rawsynth uses it, in display orientation.

    Attributes:
        mosaic: ``(H, W)`` uint16 DN of the visible area (LibRaw's ``raw_image_visible``, including any DNG
            ``DefaultCrop`` margin), ``H`` and ``W`` even (an odd last row/column of the sensor is dropped and
            noted in :attr:`notes`), then turned by :attr:`orientation` into display order. Values are as
            stored: under the black level and, for some cameras, above ``white_level``.
        pattern: Bayer layout of ``mosaic``'s top-left 2×2 block (after orientation).
        sensor: ``bit_depth = ceil(log2(white + 1))`` (clamped to 8..16), ``black_level`` (the rounded mean
            of the per-channel levels when they differ; :attr:`black_map` has them all), ``white_level``.
        black_level_per_channel: LibRaw's black level per colour, indexed like rawpy's ``color_desc``
            (``R, G, B, G2`` for ``b"RGBG"``).
        isp: colour matrix and white balance of the file (``rgb_gain = 2**BaselineExposure`` for a DNG,
            else 1), or ``None`` when the file has no colour matrix (unknown camera) or no white balance.
        iso: ISO speed, or ``None`` when the file does not record it.
        path: the file read.
        notes: human-readable remarks on adjustments made while reading (crop to even size, differing
            black levels, ignored metadata).
        orientation: the file's EXIF orientation code (1 as stored, 6 rotated 90° clockwise for display, ...;
            :func:`rawsynth.io.orientation.orient`), already applied to :attr:`mosaic` and :attr:`pattern`.
        black_map: ``(H, W)`` float32 black level of every sample, aligned with :attr:`mosaic`, when it is not
            one number (per-channel levels, DNG black deltas); ``None`` when ``sensor.black_level`` is exact.
    """

    mosaic: np.ndarray
    pattern: Pattern
    sensor: SensorParams
    black_level_per_channel: tuple[int, int, int, int]
    isp: ISPParams | None
    iso: float | None
    path: str
    notes: tuple[str, ...] = ()
    orientation: int = 1
    black_map: np.ndarray | None = None

    def black(self) -> np.ndarray | float:
        """The black level to subtract: :attr:`black_map` when there is one, else ``sensor.black_level``."""
        return self.black_map if self.black_map is not None else float(self.sensor.black_level)

    def normalized(self) -> np.ndarray:
        """``(H, W)`` float32 ``(mosaic − black) / (white − black)`` with the black of every sample
        (:meth:`black`); not clipped: read noise dips below 0, clipped highlights may exceed 1."""
        x = self.mosaic.astype(np.float32)
        if self.black_map is None:
            s = self.sensor
            return ((x - np.float32(s.black_level)) / np.float32(s.range)).astype(np.float32)
        black = self.black_map.astype(np.float32)
        return ((x - black) / (np.float32(self.sensor.white_level) - black)).astype(np.float32)

    def saturated(self) -> np.ndarray:
        """``(H, W)`` bool: samples at or above ``sensor.white_level`` (clipped highlights, whose true value is
        unknown)."""
        return self.mosaic >= self.sensor.white_level


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
    comp = tags.get("Compression", 1)
    if comp not in _DNG_COMPRESSIONS:
        raise InputError(path, "unsupported compression", detail=f"DNG raw data with TIFF Compression {comp} "
                         f"({_DNG_COMPRESSIONS_TEXT} are read)", hint="re-save it uncompressed or with lossless "
                         "JPEG, e.g. with Adobe DNG Converter")
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


def _colors(path: str, raw) -> tuple[np.ndarray, str]:
    """``(raw_colors_visible, color_desc)`` of a 2×2 R/G/B Bayer sensor, or :class:`UnsupportedCFAError`."""
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
    return np.asarray(colors), desc


def _pattern_of(colors: np.ndarray, desc: str) -> Pattern:
    """The :class:`Pattern` of a (possibly oriented) colour layout's top-left 2×2 block."""
    return Pattern("".join(desc[int(c)] for c in colors[:2, :2].ravel()))


def _black_map(raw, tags: dict | None, colors: np.ndarray, per: tuple[int, ...],
               notes: list[str]) -> np.ndarray:
    """``(H, W)`` float64 black level of every visible sample, in sensor order.

    A DNG's ``BlackLevel`` repeat pattern and ``BlackLevelDeltaH/V`` when their sizes fit the visible area
    (LibRaw's visible area starts at the ``ActiveArea`` origin, where the pattern and the deltas start too) and
    their per-colour means agree with LibRaw's per-channel levels within 1 DN; otherwise LibRaw's per-channel
    levels by colour (and a note).
    """
    h, w = colors.shape
    if tags and tags.get("BlackLevel"):
        dim = tuple(tags.get("BlackLevelRepeatDim", (1, 1)))
        levels = tags["BlackLevel"]
        dh, dv = tags.get("BlackLevelDeltaH"), tags.get("BlackLevelDeltaV")
        if len(dim) == 2 and dim[0] * dim[1] == len(levels) and (dh is None or len(dh) == w) \
                and (dv is None or len(dv) == h):
            block = np.asarray(levels, dtype=np.float64).reshape(dim)
            out = np.tile(block, (-(-h // dim[0]), -(-w // dim[1])))[:h, :w]
            if dv is not None:
                out = out + np.asarray(dv, dtype=np.float64)[:, None]
            if dh is not None:
                out = out + np.asarray(dh, dtype=np.float64)[None, :]
            # LibRaw's per-channel levels are the per-colour means of the same tags: a disagreement means the
            # visible area does not start where the pattern does (a margin we do not know about)
            masks = [(c, colors == c) for c in range(len(per))]
            if all(abs(float(out[m].mean()) - per[c]) <= 1.0 for c, m in masks if m.any()):
                return out
        notes.append("DNG black level tags do not fit the visible area; used LibRaw's per-channel levels")
    levels = list(per)
    if raw.num_colors == 3 and per[3] == 0 and per[1] != 0:  # G2 unset (as in _sensor): green's level
        levels[3] = per[1]
    return np.asarray(levels, dtype=np.float64)[np.minimum(colors, len(levels) - 1)]


def _sensor(path: str, raw, notes: list[str]) -> tuple[SensorParams, tuple[int, int, int, int]]:
    per = tuple(int(v) for v in raw.black_level_per_channel)
    per = (per + (per[-1],) * 4)[:4]
    used = per[:3] if raw.num_colors == 3 and per[3] == 0 and per[1] != 0 else per  # G2 unset: ignore it
    black = int(round(float(np.mean(used))))
    if len(set(used)) > 1:
        notes.append(f"per-channel black levels {per} differ; sensor.black_level is their rounded mean {black}, "
                     "black_map holds each sample's")
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
    if tags and any(tags.get(f"ColorMatrix{i}") is not None for i in (1, 2)):
        neutral = None
        if tags.get("AsShotNeutral") is None and tags.get("AsShotWhiteXY") is None:
            wb = _white_balance(raw, notes)
            neutral = None if wb is None else (1.0 / wb[0], 1.0, 1.0 / wb[1])
        if neutral is not None or tags.get("AsShotNeutral") is not None or tags.get("AsShotWhiteXY") is not None:
            try:
                return isp_from_dng_tags(tags, neutral)
            except (ConfigError, np.linalg.LinAlgError) as e:
                notes.append(f"unusable DNG colour metadata ({e}); used LibRaw's")
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
            (``"truncated"``), not a RAW file (``"not a RAW file"``), too large for LibRaw (``"too large"``),
            or a DNG whose raw data uses a compression LibRaw cannot decode (``"unsupported compression"``).
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
            colors, desc = _colors(name, raw)
            mosaic = _mosaic(raw, notes)
            h, w = mosaic.shape
            colors = colors[:h, :w]
            sensor, per = _sensor(name, raw, notes)
            black = _black_map(raw, tags, colors, per, notes)
            isp = _isp(raw, tags, notes)
            iso = _iso(name, raw, tags)
            orientation = LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1)
        except rawpy.LibRawError as e:
            raise _libraw_error(name, e, tags) from None
    if orientation != 1:
        mosaic = np.ascontiguousarray(orient(mosaic, orientation))
        colors = orient(colors, orientation)
        black = orient(black, orientation)
        notes.append(f"orientation {orientation} applied: mosaic and pattern are in display order")
    black_map = None if np.all(black == black.flat[0]) and black.flat[0] == sensor.black_level \
        else np.ascontiguousarray(black, dtype=np.float32)
    for note in notes:
        if "cropped" in note:
            warnings.warn(f"{name}: {note}", stacklevel=2)
    return RawImage(mosaic, _pattern_of(colors, desc), sensor, per, isp, iso, name, tuple(notes), orientation,
                    black_map)
