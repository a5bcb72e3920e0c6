"""The DNG colour model (DNG 1.7, chapter 6) reduced to what :func:`rawsynth.isp.process` applies: white balance,
then one camera → linear sRGB matrix. See ``docs/io.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..isp.params import RGB2XYZ, ISPParams

__all__ = ["D50_XY", "D65_XY", "ILLUMINANT_TEMPERATURES", "xy_to_xyz", "xyz_to_xy", "bradford",
           "as_shot_white_xy", "isp_from_dng_tags"]

#: D65 as the sRGB primaries define it (``RGB2XYZ @ 1``), so D65 → sRGB white is exact.
D65_XY = tuple(float(v) for v in (np.sum(RGB2XYZ, axis=1) / np.sum(RGB2XYZ))[:2])
D50_XY = (0.34567, 0.35850)
#: Colour temperature (K) of the EXIF LightSource codes DNG uses for CalibrationIlluminant.
ILLUMINANT_TEMPERATURES = {
    1: 5500.0, 2: 4200.0, 3: 2850.0, 4: 5500.0, 9: 5500.0, 10: 6500.0, 11: 7500.0, 12: 6400.0, 13: 5000.0,
    14: 4150.0, 15: 3450.0, 16: 2940.0, 17: 2856.0, 18: 4874.0, 19: 6774.0, 20: 5503.0, 21: 6504.0,
    22: 7504.0, 23: 5003.0, 24: 3200.0,
}
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
_ITERATIONS = 30


def xy_to_xyz(xy) -> np.ndarray:
    """Chromaticity ``(x, y)`` → XYZ with ``Y = 1``, ``(3,)`` float64."""
    x, y = float(xy[0]), float(xy[1])
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def xyz_to_xy(xyz) -> tuple[float, float]:
    """XYZ → chromaticity ``(x, y)``."""
    s = float(np.sum(xyz))
    if not math.isfinite(s) or abs(s) < 1e-12:
        raise ConfigError(f"XYZ {np.asarray(xyz).tolist()} has no chromaticity")
    return float(xyz[0]) / s, float(xyz[1]) / s


def bradford(src_xy, dst_xy) -> np.ndarray:
    """``(3, 3)`` Bradford chromatic adaptation of XYZ from white ``src_xy`` to white ``dst_xy``."""
    s = _BRADFORD @ xy_to_xyz(src_xy)
    d = _BRADFORD @ xy_to_xyz(dst_xy)
    return np.linalg.inv(_BRADFORD) @ np.diag(d / s) @ _BRADFORD


def _cct(xy) -> float:
    """Correlated colour temperature (K) of ``xy`` by McCamy's cubic, clipped to 2000..50000 K."""
    n = (xy[0] - 0.3320) / (0.1858 - xy[1])
    t = 449.0 * n ** 3 + 3525.0 * n ** 2 + 6823.3 * n + 5520.33
    return float(min(50000.0, max(2000.0, t)))


def _profiles(tags: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None, float]]:
    """``[(ColorMatrix, CameraCalibration, ForwardMatrix or None, temperature K)]`` of the file, 1 or 2."""
    out = []
    for i in (1, 2):
        cm = tags.get(f"ColorMatrix{i}")
        if cm is None or np.asarray(cm).shape != (3, 3) or not np.any(cm):
            continue
        cc = tags.get(f"CameraCalibration{i}")
        cc = np.asarray(cc, dtype=np.float64) if cc is not None and np.asarray(cc).shape == (3, 3) else np.eye(3)
        fm = tags.get(f"ForwardMatrix{i}")
        fm = np.asarray(fm, dtype=np.float64) if fm is not None and np.asarray(fm).shape == (3, 3) else None
        temp = ILLUMINANT_TEMPERATURES.get(int(tags.get(f"CalibrationIlluminant{i}", 21) or 21), 6504.0)
        out.append((np.asarray(cm, dtype=np.float64), cc, fm, temp))
    return out


def _weight(profiles, xy) -> float:
    """Weight of the first profile for white ``xy`` (linear in inverse temperature, clipped to [0, 1])."""
    if len(profiles) < 2 or profiles[0][3] == profiles[1][3]:
        return 1.0
    t1, t2 = profiles[0][3], profiles[1][3]
    w = (1.0 / _cct(xy) - 1.0 / t2) / (1.0 / t1 - 1.0 / t2)
    return float(min(1.0, max(0.0, w)))


def _mix(profiles, w: float, k: int):
    """Item ``k`` (0 ColorMatrix, 1 CameraCalibration, 2 ForwardMatrix) interpolated with weight ``w``; a
    ForwardMatrix is used only when every profile has one (``None`` otherwise)."""
    items = [p[k] for p in profiles]
    if any(i is None for i in items):
        return None
    if len(items) == 1:
        return items[0]
    return w * items[0] + (1.0 - w) * items[1]


def _analog_balance(tags: dict) -> np.ndarray:
    ab = tags.get("AnalogBalance")
    if ab is None or len(ab) != 3 or not all(math.isfinite(v) and v > 0 for v in ab):
        return np.eye(3)
    return np.diag(np.asarray(ab, dtype=np.float64))


def as_shot_white_xy(tags: dict, neutral: np.ndarray | Sequence[float] | None = None) -> tuple[float, float]:
    """The scene white chromaticity the tags imply (``AsShotNeutral`` through the colour matrices, iterated as
    the DNG SDK does; ``AsShotWhiteXY`` when there is no neutral).

    Args:
        tags: :func:`~rawsynth.io.dng.read_dng_tags` output with at least one ``ColorMatrixN``.
        neutral: camera neutral to use instead of ``AsShotNeutral``.

    Raises:
        ConfigError: no colour matrix, or neither a neutral nor a white xy.
    """
    profiles = _profiles(tags)
    if not profiles:
        raise ConfigError("the DNG has no ColorMatrix1/2")
    n = neutral if neutral is not None else tags.get("AsShotNeutral")
    if n is None:
        xy = tags.get("AsShotWhiteXY")
        if xy is None:
            raise ConfigError("the DNG has neither AsShotNeutral nor AsShotWhiteXY")
        return float(xy[0]), float(xy[1])
    n = np.asarray(n, dtype=np.float64)
    ab = _analog_balance(tags)
    xy = D50_XY
    for _ in range(_ITERATIONS):
        w = _weight(profiles, xy)
        m = ab @ _mix(profiles, w, 1) @ _mix(profiles, w, 0)
        new = xyz_to_xy(np.linalg.solve(m, n))
        if abs(new[0] - xy[0]) + abs(new[1] - xy[1]) < 1e-9:
            return new
        xy = new
    return xy


def isp_from_dng_tags(tags: dict, neutral: np.ndarray | Sequence[float] | None = None) -> ISPParams:
    """:class:`~rawsynth.isp.ISPParams` of a DNG's colour tags (module docstring).

    Args:
        tags: :func:`~rawsynth.io.dng.read_dng_tags` output.
        neutral: camera raw white ``(3,)`` to use instead of ``AsShotNeutral`` (e.g. LibRaw's daylight balance).

    Returns:
        ``rgb2cam`` (rows sum to 1), ``red_gain = n_G / n_R``, ``blue_gain = n_G / n_B``,
        ``rgb_gain = 2 ** BaselineExposure`` (1 without it).

    Raises:
        ConfigError: no colour matrix, no white, or a singular or non-positive result.
    """
    profiles = _profiles(tags)
    if not profiles:
        raise ConfigError("the DNG has no ColorMatrix1/2")
    white = as_shot_white_xy(tags, neutral)
    n = np.asarray(neutral if neutral is not None else tags.get("AsShotNeutral"), dtype=np.float64) \
        if (neutral is not None or tags.get("AsShotNeutral") is not None) else None
    ab = _analog_balance(tags)
    w = _weight(profiles, white)
    cm, cc, fm = _mix(profiles, w, 0), _mix(profiles, w, 1), _mix(profiles, w, 2)
    m = ab @ cc @ cm  # XYZ -> camera raw
    if n is None:  # AsShotWhiteXY only
        n = m @ xy_to_xyz(white)
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ConfigError(f"camera neutral {n.tolist()} is not positive")
    n = n / n.max()
    xyz2rgb = np.linalg.inv(np.asarray(RGB2XYZ, dtype=np.float64))
    if fm is not None:
        ref = np.linalg.solve(ab @ cc, n)
        cam2xyz = fm @ np.diag(1.0 / ref) @ np.linalg.inv(ab @ cc) @ np.diag(n)
        cam2rgb = xyz2rgb @ bradford(D50_XY, D65_XY) @ cam2xyz
    else:
        cam2xyz = np.linalg.inv(m) @ np.diag(n)
        y_white = float((cam2xyz @ np.ones(3))[1])
        cam2rgb = xyz2rgb @ bradford(white, D65_XY) @ cam2xyz / y_white
    rgb2cam = np.linalg.inv(cam2rgb)
    rgb2cam = rgb2cam / rgb2cam.sum(axis=1, keepdims=True)
    exposure = float(tags.get("BaselineExposure", 0.0) or 0.0)
    rgb_gain = 2.0 ** exposure if math.isfinite(exposure) else 1.0
    return ISPParams.from_rgb2cam(rgb2cam, rgb_gain, n[1] / n[0], n[1] / n[2])
