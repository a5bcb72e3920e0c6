"""An independent DNG writer for reader tests: tifffile with every tag written by hand from the DNG 1.4
specification (no code of ``rawsynth.io.dng``), so a convention shared by our writer and our reader cannot
hide here. Camera DNGs carry things ours never do: per-channel black levels (``BlackLevelRepeatDim`` 2×2 and
``BlackLevelDeltaH/V``), an ``Orientation``, ``AnalogBalance``, ``CameraCalibration``, ``ForwardMatrix`` and
highlights clipped at the white level.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import tifffile

CFA_CODES = {"R": 0, "G": 1, "B": 2}


def _srational(values) -> tuple[int, ...]:
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        f = Fraction(float(v)).limit_denominator(10_000)
        out += [f.numerator, f.denominator]
    return tuple(out)


def write_camera_dng(path, mosaic_dn: np.ndarray, pattern: str, *, black=(0,), black_dim=(1, 1), white=4095,
                     orientation=1, color_matrix=None, neutral=None, forward_matrix=None, analog_balance=None,
                     camera_calibration=None, illuminant=21, baseline_exposure=None, black_delta_h=None,
                     black_delta_v=None, iso=None, cfa_dim=(2, 2), cfa=None, compression=None) -> None:
    """Write ``mosaic_dn`` ``(H, W)`` uint16 as a CFA DNG with hand-written tags.

    ``pattern`` is the CFA of the stored (sensor-orientation) mosaic, e.g. ``"RGGB"``; ``black`` holds
    ``black_dim[0] * black_dim[1]`` values (row-major over the repeat pattern); matrices are ``(3, 3)``.
    ``compression`` other than ``None`` is passed to tifffile (e.g. ``"zlib"``: Deflate, which DNG 1.4 allows
    only for floating point data, so LibRaw rejects it for 16-bit integers).
    """
    cfa_bytes = bytes(cfa) if cfa is not None else bytes(CFA_CODES[c] for c in pattern)
    tags = [
        (33421, "H", 2, tuple(cfa_dim), True),  # CFARepeatPatternDim
        (33422, "B", len(cfa_bytes), cfa_bytes, True),  # CFAPattern
        (50706, "B", 4, bytes((1, 4, 0, 0)), True),  # DNGVersion
        (50707, "B", 4, bytes((1, 1, 0, 0)), True),  # DNGBackwardVersion
        (271, "s", 0, "Indep", True), (272, "s", 0, "Writer", True), (50708, "s", 0, "Indep Writer", True),
        (274, "H", 1, int(orientation), True),  # Orientation
        (50713, "H", 2, tuple(black_dim), True),  # BlackLevelRepeatDim
        (50714, "2I", len(black), _srational(black), True),  # BlackLevel (RATIONAL)
        (50717, "I", 1, int(white), True),  # WhiteLevel
    ]
    if black_delta_h is not None:
        tags.append((50715, "2i", len(black_delta_h), _srational(black_delta_h), True))
    if black_delta_v is not None:
        tags.append((50716, "2i", len(black_delta_v), _srational(black_delta_v), True))
    if color_matrix is not None:
        tags += [(50721, "2i", 9, _srational(color_matrix), True), (50778, "H", 1, int(illuminant), True)]
    if camera_calibration is not None:
        tags.append((50723, "2i", 9, _srational(camera_calibration), True))
    if analog_balance is not None:
        tags.append((50727, "2I", 3, _srational(analog_balance), True))
    if neutral is not None:
        tags.append((50728, "2I", 3, _srational(neutral), True))
    if baseline_exposure is not None:
        tags.append((50730, "2i", 1, _srational([baseline_exposure]), True))
    if forward_matrix is not None:
        tags.append((50964, "2i", 9, _srational(forward_matrix), True))
    if iso is not None:
        tags.append((34855, "H", 1, int(iso), True))
    tifffile.imwrite(path, np.ascontiguousarray(mosaic_dn, dtype=np.uint16), photometric=32803,
                     compression=compression, metadata=None, subfiletype=0, software=False,
                     extratags=sorted(tags, key=lambda t: t[0]))
