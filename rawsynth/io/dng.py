"""Write a minimal valid CFA DNG (one uncompressed Bayer IFD, tifffile) that developers render the way
:func:`rawsynth.isp.process` does; :func:`read_dng_tags` reads it back. See ``docs/io.md``."""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import tifffile

from ..errors import ConfigError, ShapeError
from ..isp.params import RGB2XYZ, ISPParams
from ..mns.cfa import Pattern, PatternLike
from ..mns.sensor import SensorParams
from .atomic import atomic_output
from .dng_read import (_AS_SHOT_NEUTRAL, _BASELINE_EXPOSURE, _BLACK_LEVEL, _BLACK_LEVEL_REPEAT_DIM,
                       _CALIBRATION_ILLUMINANT1, _CFA_PATTERN, _CFA_REPEAT_PATTERN_DIM, _COLOR_MATRIX1,
                       _DEFAULT_CROP_ORIGIN, _DEFAULT_CROP_SIZE, _DNG_BACKWARD_VERSION, _DNG_VERSION, _EXIF_IFD,
                       _EXIF_IFD_PLACEHOLDER, _INT32_MAX, _ISO_SPEED_RATINGS, _MAKE, _MODEL, _ORIENTATION,
                       _UINT32_MAX, _UNIQUE_CAMERA_MODEL, _WHITE_LEVEL, CROP_MARGIN, ILLUMINANT_D65,
                       MAX_DENOMINATOR, PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW, read_dng_tags)
from .dng_read import LIBRAW_MIN_SIZE  # noqa: F401  (re-exported: rawsynth.io.raw and old imports use it here)

__all__ = ["encode_dng", "write_dng", "read_dng_tags", "xyz2cam_from_rgb2cam", "as_shot_neutral",
           "PHOTOMETRIC_CFA", "PHOTOMETRIC_LINEAR_RAW", "CROP_MARGIN"]


def as_shot_neutral(isp: ISPParams) -> np.ndarray:
    """The DNG ``AsShotNeutral`` of ``isp``: ``(1/red_gain, 1, 1/blue_gain)`` (camera raw of the scene white,
    green 1), ``(3,)`` float64."""
    return np.array([1.0 / isp.red_gain, 1.0, 1.0 / isp.blue_gain])


def xyz2cam_from_rgb2cam(rgb2cam: np.ndarray | Sequence[Sequence[float]],
                         neutral: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """The DNG ``ColorMatrix`` (XYZ → camera raw) of a linear-sRGB → camera matrix:
    ``diag(neutral) @ rgb2cam @ inv(RGB2XYZ)``.

    With rows of ``rgb2cam`` summing to 1 it maps D65 white (``RGB2XYZ @ 1``) to ``neutral`` (the
    ``AsShotNeutral``), so a reader that infers the scene white from the matrix and the neutral (the DNG SDK)
    finds D65. Row normalisation (:func:`~rawsynth.isp.rgb2cam_from_xyz2cam`, LibRaw) removes the diagonal
    and gives ``rgb2cam`` back.

    Args:
        rgb2cam: ``(3, 3)``.
        neutral: ``(3,)`` camera neutral (:func:`as_shot_neutral`); ``None`` for ``(1, 1, 1)``.

    Returns:
        ``(3, 3)`` float64.
    """
    m = np.asarray(rgb2cam, dtype=np.float64) @ np.linalg.inv(np.asarray(RGB2XYZ, dtype=np.float64))
    if neutral is not None:
        m = np.diag(np.asarray(neutral, dtype=np.float64)) @ m
    return m


def _rational(v: float, signed: bool, what: str) -> tuple[int, int]:
    """Closest ``(numerator, denominator)`` to ``v`` with denominator ≤ :data:`MAX_DENOMINATOR` that fits
    a TIFF (S)RATIONAL."""
    if not math.isfinite(v) or (not signed and v < 0):
        raise ConfigError(f"write_dng: {what} = {v} cannot be stored as a{' signed' if signed else 'n unsigned'} "
                          "TIFF rational")
    f = Fraction(v).limit_denominator(MAX_DENOMINATOR)
    limit = _INT32_MAX if signed else _UINT32_MAX
    if abs(f.numerator) > limit:
        raise ConfigError(f"write_dng: {what} = {v} is too large for a TIFF rational")
    return f.numerator, f.denominator


def _rationals(values, signed: bool, what: str) -> tuple[int, ...]:
    out: list[int] = []
    for i, v in enumerate(values):
        out += _rational(float(v), signed, f"{what}[{i}]")
    return tuple(out)


def _reciprocal(v: float, what: str) -> tuple[int, int]:
    """``1/v`` as an exact reciprocal of ``v``'s best rational, so ``1/(1/v)`` reads back as closely as ``v``."""
    num, den = _rational(v, False, what)
    if num == 0 or den > _UINT32_MAX:
        raise ConfigError(f"write_dng: {what} = {v} has no storable reciprocal")
    return den, num


def _check_mosaic(mosaic_dn, sensor: SensorParams) -> np.ndarray:
    if not isinstance(mosaic_dn, np.ndarray):
        raise ShapeError(f"write_dng: mosaic_dn must be a numpy uint16 (H, W) array, got {type(mosaic_dn).__name__}; "
                         "convert a (1, 1, H, W) tensor with t[0, 0].cpu().numpy()")
    if mosaic_dn.dtype.kind != "u" or mosaic_dn.dtype.itemsize != 2:
        raise ShapeError(f"write_dng: mosaic_dn must be uint16 DN, got {mosaic_dn.dtype}; quantise normalised RAW "
                         "with rawsynth.mns.quantize(x, sensor) first")
    if mosaic_dn.ndim != 2:
        raise ShapeError(f"write_dng: mosaic_dn must be 2-D (H, W), got shape {mosaic_dn.shape}; "
                         "squeeze batch/channel dims (x[0, 0] for (1, 1, H, W))")
    h, w = mosaic_dn.shape
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ShapeError(f"write_dng: mosaic_dn must have even height and width >= 2 (whole 2x2 Bayer blocks), "
                         f"got {h}x{w}; crop at an even offset first")
    top = int(mosaic_dn.max())
    if top > sensor.white_level:
        raise ShapeError(f"write_dng: mosaic_dn has values up to {top}, above the white level "
                         f"{sensor.white_level}; clip with np.minimum(x, white) or pass matching SensorParams")
    return np.ascontiguousarray(mosaic_dn, dtype=np.uint16)


def _check_pattern(pattern) -> Pattern:
    try:
        return Pattern(pattern)
    except ValueError:
        raise ShapeError(f"write_dng: unknown Bayer pattern {pattern!r}; use one of "
                         f"{[p.value for p in Pattern]}") from None


def _check_args(sensor, isp, iso, make, model) -> None:
    if not isinstance(sensor, SensorParams):
        raise ConfigError(f"write_dng: sensor must be a SensorParams, got {type(sensor).__name__}")
    if isp is not None and not isinstance(isp, ISPParams):
        raise ConfigError(f"write_dng: isp must be an ISPParams or None, got {type(isp).__name__}")
    if iso is not None:
        if isinstance(iso, bool) or not isinstance(iso, (int, float, np.integer, np.floating)) \
                or not 1 <= float(iso) <= 65535:
            raise ConfigError(f"write_dng: iso must be a number in [1, 65535] (ISOSpeedRatings is a SHORT), "
                              f"got {iso!r}")
    for name, v in (("make", make), ("model", model)):
        if not isinstance(v, str) or not v or not v.isascii() or "\x00" in v:
            raise ConfigError(f"write_dng: {name} must be a non-empty ASCII string, got {v!r}")


def _extratags(shape: tuple[int, int], pattern: Pattern, sensor: SensorParams, isp: ISPParams | None, iso,
               make: str, model: str) -> list[tuple]:
    """tifffile ``extratags`` ``(code, dtype, count, value, writeonce)`` of the DNG."""
    tags = [
        (_CFA_REPEAT_PATTERN_DIM, "H", 2, (2, 2), True),
        (_CFA_PATTERN, "B", 4, bytes(pattern.cfa_bytes), True),
        (_DNG_VERSION, "B", 4, bytes((1, 4, 0, 0)), True),
        (_DNG_BACKWARD_VERSION, "B", 4, bytes((1, 1, 0, 0)), True),
        (_MAKE, "s", 0, make, True),
        (_MODEL, "s", 0, model, True),
        (_UNIQUE_CAMERA_MODEL, "s", 0, f"{make} {model}", True),
        (_ORIENTATION, "H", 1, 1, True),
        (_BLACK_LEVEL_REPEAT_DIM, "H", 2, (1, 1), True),
        (_BLACK_LEVEL, "I", 1, sensor.black_level, True),
        (_WHITE_LEVEL, "I", 1, sensor.white_level, True),
    ]
    h, w = shape
    if min(h, w) >= 2 * CROP_MARGIN + 2:
        tags += [(_DEFAULT_CROP_ORIGIN, "I", 2, (CROP_MARGIN, CROP_MARGIN), True),
                 (_DEFAULT_CROP_SIZE, "I", 2, (w - 2 * CROP_MARGIN, h - 2 * CROP_MARGIN), True)]
    if isp is not None:
        xyz2cam = xyz2cam_from_rgb2cam(isp.rgb2cam, as_shot_neutral(isp))
        neutral = _reciprocal(isp.red_gain, "1/red_gain") + (1, 1) + _reciprocal(isp.blue_gain, "1/blue_gain")
        tags += [
            (_COLOR_MATRIX1, "2i", 9, _rationals(xyz2cam.ravel(), True, "ColorMatrix1"), True),
            (_CALIBRATION_ILLUMINANT1, "H", 1, ILLUMINANT_D65, True),
            (_AS_SHOT_NEUTRAL, "2I", 3, neutral, True),
            (_BASELINE_EXPOSURE, "2i", 1, _rational(math.log2(isp.rgb_gain), True, "BaselineExposure"), True),
        ]
    if iso is not None:
        # ISO goes into an EXIF IFD only (exiftool -validate: "Wrong IFD for 0x8827 ISO" in IFD0). tifffile will
        # not write tag 34665 itself: reserve the entry under the next (unassigned) code, which sorts to the same
        # place, and let _append_exif_iso rename it and fill in the offset.
        tags.append((_EXIF_IFD_PLACEHOLDER, "I", 1, 0, True))
    return sorted(tags, key=lambda t: t[0])


def _append_exif_iso(buf: bytearray, iso: int) -> None:
    """Append an EXIF IFD holding ``ISOSpeedRatings`` to a little-endian TIFF (in ``buf``) written with the
    ``_EXIF_IFD_PLACEHOLDER`` entry, and turn that entry into an ``ExifIFD`` pointer to it.

    EXIF (and exiftool's validator) wants ISO in the EXIF IFD, the only place LibRaw, like most RAW readers,
    looks for it; tifffile cannot write one.
    """
    (ifd0,) = struct.unpack_from("<I", buf, 4)
    (n,) = struct.unpack_from("<H", buf, ifd0)
    for i in range(n):
        entry_pos = ifd0 + 2 + 12 * i
        if struct.unpack_from("<H", buf, entry_pos)[0] == _EXIF_IFD_PLACEHOLDER:
            break
    else:
        raise RuntimeError("write_dng: ExifIFD placeholder missing")  # cannot happen: we wrote it
    buf.extend(b"\x00" * ((-len(buf)) % 4))
    exif_pos = len(buf)
    buf.extend(struct.pack("<H", 1) + struct.pack("<HHIHH", _ISO_SPEED_RATINGS, 3, 1, iso, 0) + struct.pack("<I", 0))
    struct.pack_into("<HHII", buf, entry_pos, _EXIF_IFD, 4, 1, exif_pos)


def encode_dng(mosaic_dn: np.ndarray, pattern: PatternLike, sensor: SensorParams, isp: ISPParams | None = None,
               iso: float | None = None, make: str = "rawsynth", model: str = "synthetic") -> bytes:
    """The bytes of the DNG :func:`write_dng` writes (same arguments, same checks), e.g. for a tar member."""
    _check_args(sensor, isp, iso, make, model)
    mosaic_dn = _check_mosaic(mosaic_dn, sensor)
    pattern = _check_pattern(pattern)
    tags = _extratags(mosaic_dn.shape, pattern, sensor, isp, iso, make, model)
    f = io.BytesIO()
    tifffile.imwrite(f, mosaic_dn, photometric=PHOTOMETRIC_CFA, compression=None, metadata=None,
                     subfiletype=0, software=False, extratags=tags, byteorder="<")
    buf = bytearray(f.getvalue())
    if iso is not None:
        _append_exif_iso(buf, int(round(float(iso))))
    return bytes(buf)


def write_dng(path: str | os.PathLike, mosaic_dn: np.ndarray, pattern: PatternLike, sensor: SensorParams,
              isp: ISPParams | None = None, iso: float | None = None, make: str = "rawsynth",
              model: str = "synthetic") -> None:
    """Atomically write a Bayer mosaic as an uncompressed CFA DNG 1.4 (see the module docstring for the tags).

    Checked in the test suite against readers we did not write: ``exiftool -validate`` (no warning), Adobe's
    DNG SDK through ``dngpy`` (no warning; tags read back; the as-shot white the tags imply is D65), LibRaw
    (the same mosaic, levels and pattern; its development matches :func:`~rawsynth.isp.process`).
    ``read_raw(path)`` gives back the mosaic, pattern, sensor levels, ISP parameters and ISO.

    Args:
        path: destination (``.dng``); written to a temporary file in the same folder, then moved.
        mosaic_dn: ``(H, W)`` uint16 DN, ``H`` and ``W`` even, every value ``<= sensor.white_level``
            (values under the black level are kept).
        pattern: the mosaic's Bayer layout.
        sensor: black and white level (``BlackLevel``, ``WhiteLevel``).
        isp: colour matrix, white balance and brightness to record (``ColorMatrix1``, ``AsShotNeutral``,
            ``BaselineExposure``); without it the DNG has no colour metadata.
        iso: ``ISOSpeedRatings`` (rounded to an integer, 1–65535), or ``None`` to omit it; written to an
            EXIF IFD.
        make: ``Make`` (``UniqueCameraModel`` is ``"make model"``).
        model: ``Model``.

    Note:
        LibRaw (hence rawpy and :func:`~rawsynth.io.raw.read_raw`) refuses images smaller than
        :data:`LIBRAW_MIN_SIZE` (22) pixels on a side; such DNGs are valid but only other readers open them.

    Raises:
        ShapeError: ``mosaic_dn`` is not 2-D uint16 with even sides, exceeds the white level, or
            ``pattern`` is unknown.
        ConfigError: ``sensor``/``isp``/``iso``/``make``/``model`` of the wrong type or out of range.
    """
    data = encode_dng(mosaic_dn, pattern, sensor, isp, iso, make, model)
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
