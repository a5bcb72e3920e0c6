"""DNG tag codes and :func:`read_dng_tags`: the tags rawsynth writes (and LibRaw does not expose) read back from a
DNG, IFD0 and the full-resolution raw IFD. See ``docs/io.md``."""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import tifffile

from ..errors import InputError

__all__ = ["read_dng_tags", "PHOTOMETRIC_CFA", "PHOTOMETRIC_LINEAR_RAW", "ILLUMINANT_D65", "LIBRAW_MIN_SIZE",
           "CROP_MARGIN"]

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892
#: EXIF LightSource / DNG CalibrationIlluminant code of D65.
ILLUMINANT_D65 = 21
#: LibRaw (dcraw's heritage) refuses raw images narrower or shorter than this many pixels.
LIBRAW_MIN_SIZE = 22
#: Largest rational denominator used when encoding floats (≈ 1e-12 relative error for typical values).
MAX_DENOMINATOR = 1_000_000
#: Pixels left outside ``DefaultCropOrigin``/``DefaultCropSize`` on each side (the DNG SDK wants >= 1.9; even,
#: so the crop starts on the same Bayer phase).
CROP_MARGIN = 2
_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1

# Tag codes (TIFF, TIFF/EP, EXIF, DNG 1.4).
_NEW_SUBFILE_TYPE, _IMAGE_WIDTH, _IMAGE_LENGTH, _BITS_PER_SAMPLE, _COMPRESSION = 254, 256, 257, 258, 259
_PHOTOMETRIC, _MAKE, _MODEL, _STRIP_OFFSETS, _ORIENTATION, _STRIP_BYTE_COUNTS = 262, 271, 272, 273, 274, 279
_TILE_OFFSETS, _TILE_BYTE_COUNTS, _EXIF_IFD, _EXIF_IFD_PLACEHOLDER = 324, 325, 34665, 34666
_CFA_REPEAT_PATTERN_DIM, _CFA_PATTERN, _ISO_SPEED_RATINGS, _CFA_PLANE_COLOR = 33421, 33422, 34855, 50710
_DNG_VERSION, _DNG_BACKWARD_VERSION, _UNIQUE_CAMERA_MODEL = 50706, 50707, 50708
_BLACK_LEVEL_REPEAT_DIM, _BLACK_LEVEL, _WHITE_LEVEL = 50713, 50714, 50717
_COLOR_MATRIX1, _COLOR_MATRIX2, _AS_SHOT_NEUTRAL, _BASELINE_EXPOSURE = 50721, 50722, 50728, 50730
_CALIBRATION_ILLUMINANT1, _CALIBRATION_ILLUMINANT2 = 50778, 50779
_DEFAULT_CROP_ORIGIN, _DEFAULT_CROP_SIZE, _ANALOG_BALANCE = 50719, 50720, 50727
_CAMERA_CALIBRATION1, _CAMERA_CALIBRATION2, _FORWARD_MATRIX1, _FORWARD_MATRIX2 = 50723, 50724, 50964, 50965
_BLACK_LEVEL_DELTA_H, _BLACK_LEVEL_DELTA_V, _ACTIVE_AREA = 50715, 50716, 50829
_RATIONAL, _SRATIONAL = 5, 10  # TIFF data types

# Decoders of the tags read_dng_tags returns: name → (code, kind).
_GLOBAL_TAGS = {
    "DNGVersion": (_DNG_VERSION, "ints"),
    "DNGBackwardVersion": (_DNG_BACKWARD_VERSION, "ints"),
    "Make": (_MAKE, "str"),
    "Model": (_MODEL, "str"),
    "UniqueCameraModel": (_UNIQUE_CAMERA_MODEL, "str"),
    "Orientation": (_ORIENTATION, "int"),
    "ColorMatrix1": (_COLOR_MATRIX1, "matrix"),
    "ColorMatrix2": (_COLOR_MATRIX2, "matrix"),
    "CalibrationIlluminant1": (_CALIBRATION_ILLUMINANT1, "int"),
    "CalibrationIlluminant2": (_CALIBRATION_ILLUMINANT2, "int"),
    "AsShotNeutral": (_AS_SHOT_NEUTRAL, "floats"),
    "AsShotWhiteXY": (50729, "floats"),
    "AnalogBalance": (_ANALOG_BALANCE, "floats"),
    "CameraCalibration1": (_CAMERA_CALIBRATION1, "matrix"),
    "CameraCalibration2": (_CAMERA_CALIBRATION2, "matrix"),
    "ForwardMatrix1": (_FORWARD_MATRIX1, "matrix"),
    "ForwardMatrix2": (_FORWARD_MATRIX2, "matrix"),
    "BaselineExposure": (_BASELINE_EXPOSURE, "float"),
    "ISOSpeedRatings": (_ISO_SPEED_RATINGS, "int"),
}
_RAW_IFD_TAGS = {
    "NewSubfileType": (_NEW_SUBFILE_TYPE, "int"),
    "ImageWidth": (_IMAGE_WIDTH, "int"),
    "ImageLength": (_IMAGE_LENGTH, "int"),
    "BitsPerSample": (_BITS_PER_SAMPLE, "int"),
    "Compression": (_COMPRESSION, "int"),
    "PhotometricInterpretation": (_PHOTOMETRIC, "int"),
    "CFARepeatPatternDim": (_CFA_REPEAT_PATTERN_DIM, "ints"),
    "CFAPattern": (_CFA_PATTERN, "ints"),
    "CFAPlaneColor": (_CFA_PLANE_COLOR, "ints"),
    "BlackLevelRepeatDim": (_BLACK_LEVEL_REPEAT_DIM, "ints"),
    "BlackLevel": (_BLACK_LEVEL, "floats"),
    "BlackLevelDeltaH": (_BLACK_LEVEL_DELTA_H, "floats"),
    "BlackLevelDeltaV": (_BLACK_LEVEL_DELTA_V, "floats"),
    "WhiteLevel": (_WHITE_LEVEL, "ints"),
    "DefaultCropOrigin": (_DEFAULT_CROP_ORIGIN, "floats"),
    "DefaultCropSize": (_DEFAULT_CROP_SIZE, "floats"),
    "ActiveArea": (_ACTIVE_AREA, "ints"),
    "StripOffsets": (_STRIP_OFFSETS, "ints"),
    "StripByteCounts": (_STRIP_BYTE_COUNTS, "ints"),
    "TileOffsets": (_TILE_OFFSETS, "ints"),
    "TileByteCounts": (_TILE_BYTE_COUNTS, "ints"),
}


def _decode(tag, kind: str):
    """A tifffile tag's value as a plain Python value (rationals as floats, matrices as ``(N, 3)`` arrays)."""
    value = tag.value
    if kind == "str":
        return value.rstrip("\x00") if isinstance(value, str) else bytes(value).rstrip(b"\x00").decode("latin-1")
    vals = tuple(value) if isinstance(value, (bytes, bytearray, tuple, list, np.ndarray)) else (value,)
    if tag.dtype in (_RATIONAL, _SRATIONAL):  # tifffile gives rationals as flat (num, den, num, den, ...)
        vals = tuple(n / d if d else math.nan for n, d in zip(vals[0::2], vals[1::2], strict=True))
    if kind == "int":
        return int(vals[0])
    if kind == "ints":
        return tuple(int(v) for v in vals)
    if kind == "float":
        return float(vals[0])
    if kind == "floats":
        return tuple(float(v) for v in vals)
    return np.asarray(vals, dtype=np.float64).reshape(-1, 3)  # matrix


def _collect(page, table: dict, out: dict) -> None:
    for name, (code, kind) in table.items():
        tag = page.tags.get(code)
        if tag is not None:
            out[name] = _decode(tag, kind)


def _raw_page(tif: tifffile.TiffFile):
    """The full-resolution raw IFD: IFD0 or one of its SubIFDs with a CFA/LinearRaw photometric and
    ``NewSubfileType`` 0."""
    candidates = []
    for page in tif.pages:
        candidates.append(page)
        candidates.extend(page.pages or [])  # SubIFDs (camera DNGs keep the raw image there)
    for page in candidates:
        sub = page.tags.get(_NEW_SUBFILE_TYPE)
        photometric = page.tags.get(_PHOTOMETRIC)
        if (sub is None or int(sub.value) == 0) and photometric is not None \
                and int(photometric.value) in (PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW):
            return page
    return None


def read_dng_tags(path: str | os.PathLike) -> dict:
    """Read the DNG tags rawsynth writes (and LibRaw does not expose, e.g. ISO and ``BaselineExposure``).

    Global tags come from IFD0 (``ISOSpeedRatings`` from IFD0 or the EXIF IFD); the image tags from the
    full-resolution raw IFD (IFD0 for rawsynth's DNGs, usually a SubIFD for camera DNGs).

    Returns:
        Only the tags present, by DNG name: ``DNGVersion``/``DNGBackwardVersion``/``CFARepeatPatternDim``/
        ``CFAPattern``/``CFAPlaneColor``/``BlackLevelRepeatDim``/``WhiteLevel``/``Strip*``/``Tile*`` tuples of int;
        ``Make``/``Model``/``UniqueCameraModel`` str; ``Orientation``/``CalibrationIlluminant1|2``/
        ``ISOSpeedRatings``/``NewSubfileType``/``ImageWidth``/``ImageLength``/``BitsPerSample``/
        ``Compression``/``PhotometricInterpretation`` int; ``BlackLevel``/``BlackLevelDeltaH|V``/
        ``AsShotNeutral``/``AsShotWhiteXY``/``AnalogBalance``/``DefaultCropOrigin``/``DefaultCropSize`` tuples of
        float; ``ActiveArea`` tuple of int; ``BaselineExposure`` float; ``ColorMatrix1|2`` (XYZ → camera),
        ``CameraCalibration1|2``, ``ForwardMatrix1|2`` (white-balanced camera → XYZ D50) ``(N, 3)`` float64
        arrays.
        ``file_size`` (bytes) is added for size checks.

    Raises:
        InputError: missing/empty/unreadable file, not a TIFF (``"not a RAW file"``), or a TIFF without
            ``DNGVersion`` (``"not a DNG"``).
    """
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
    except OSError as e:
        raise InputError(name, "unreadable", detail=e.strerror or str(e)) from None
    if size == 0:
        raise InputError(name, "empty file")
    try:
        with tifffile.TiffFile(name) as tif:
            first = tif.pages.first
            if first.tags.get(_DNG_VERSION) is None:
                raise InputError(name, "not a DNG", detail="TIFF without a DNGVersion tag")
            out: dict = {"file_size": size}
            _collect(first, _GLOBAL_TAGS, out)
            exif = first.tags.get(_EXIF_IFD)
            if "ISOSpeedRatings" not in out and exif is not None and isinstance(exif.value, dict):
                iso = exif.value.get("ISOSpeedRatings", exif.value.get("PhotographicSensitivity"))
                if iso is not None:
                    out["ISOSpeedRatings"] = int(iso[0] if isinstance(iso, (tuple, list)) else iso)
            raw = _raw_page(tif)
            if raw is not None:
                _collect(raw, _RAW_IFD_TAGS, out)
            return out
    except InputError:
        raise
    except tifffile.TiffFileError as e:
        raise InputError(name, "not a RAW file", detail=f"not a readable TIFF/DNG: {e}") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error) as e:
        raise InputError(name, "unreadable", detail=f"{type(e).__name__}: {e}") from None
