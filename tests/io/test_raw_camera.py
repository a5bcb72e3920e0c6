"""``read_raw`` on DNGs the way cameras write them, made by an independent writer (``indep_dng``: tifffile with
hand-written tags), compared with LibRaw's reading of the same files: per-channel black levels (2×2
``BlackLevelRepeatDim``, ``BlackLevelDeltaH/V``), every EXIF orientation, ``AnalogBalance`` and
``CameraCalibration``, ``ForwardMatrix``, clipped highlights, and the bad files each raising one typed error.
"""

from __future__ import annotations

import numpy as np
import pytest
import rawpy

from .indep_dng import write_camera_dng
from rawsynth.errors import InputError, UnsupportedCFAError
from rawsynth.io.dng_color import D50_XY, D65_XY, bradford, isp_from_dng_tags
from rawsynth.io.dng import read_dng_tags
from rawsynth.io.orientation import orient, unorient
from rawsynth.io.raw import read_raw
from rawsynth.isp.params import RGB2XYZ
from rawsynth.mns.cfa import Pattern

H, W, WHITE = 40, 60, 4000
#: A plausible XYZ -> camera matrix (not one of ours) and the D65 white in XYZ.
CM = np.array([[0.9, -0.3, -0.1], [-0.4, 1.3, 0.1], [-0.1, 0.2, 0.6]])
D65 = np.sum(RGB2XYZ, axis=1)
#: A CameraCalibration with off-diagonal terms (diagonal ones vanish under row normalisation).
CC = np.array([[0.97, 0.03, 0.0], [0.02, 1.0, -0.02], [0.0, 0.04, 1.02]])
BLACK4 = (510, 512, 514, 516)


def _mosaic(seed=0, lo=600, hi=3000) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, (H, W)).astype(np.uint16)


def _neutral(ab=None, cc=None) -> np.ndarray:
    """The camera raw of a D65 white: AB @ CC @ CM @ D65, largest component 1."""
    a = np.diag(ab) if ab is not None else np.eye(3)
    c = cc if cc is not None else np.eye(3)
    n = a @ c @ CM @ D65
    return n / n.max()


def _libraw_half(path, **kw) -> np.ndarray:
    """LibRaw's half-size development in camera RGB, unit white balance, no scaling or gamma, its own flip:
    one pixel per 2×2 block holding the block's R, G, B samples."""
    with rawpy.imread(str(path)) as raw:
        return raw.postprocess(half_size=True, output_color=rawpy.ColorSpace.raw, user_wb=[1, 1, 1, 1],
                               no_auto_bright=True, gamma=(1, 1), output_bps=16, **kw).astype(np.float64)


def _plane(x: np.ndarray, pattern: Pattern, colour: str) -> np.ndarray:
    i = pattern.value.index(colour)
    return x[i // 2::2, i % 2::2]


# --------------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_libraw(tmp_path, orientation):
    mn = _mosaic()
    path = tmp_path / "o.dng"
    write_camera_dng(path, mn, "RGGB", black=(0,), white=WHITE, orientation=orientation, color_matrix=CM,
                     neutral=_neutral())
    r = read_raw(path)
    assert r.orientation == orientation
    assert r.mosaic.shape == ((W, H) if orientation >= 5 else (H, W))
    lr = _libraw_half(path, user_black=0, user_sat=65535)  # values as stored, in LibRaw's display order
    for c, colour in ((0, "R"), (2, "B")):
        assert np.array_equal(_plane(r.mosaic, r.pattern, colour), lr[..., c]), colour
    assert np.array_equal(unorient(r.mosaic, orientation), mn)


def test_orient_is_exif():
    x = np.array([[1, 2], [3, 4]])
    assert np.array_equal(orient(x, 6), np.rot90(x, -1)) and np.array_equal(orient(x, 8), np.rot90(x, 1))
    assert np.array_equal(orient(x, 3), np.rot90(x, 2)) and np.array_equal(orient(x, 5), x.T)
    for code in range(1, 9):
        assert np.array_equal(unorient(orient(x, code), code), x)


# --------------------------------------------------------------------------------------------- black levels


@pytest.mark.parametrize("pattern, orientation", [("RGGB", 1), ("GBRG", 1), ("BGGR", 6), ("GRBG", 8)])
def test_per_channel_black_matches_libraw(tmp_path, pattern, orientation):
    mn = _mosaic(1)
    path = tmp_path / "b.dng"
    write_camera_dng(path, mn, pattern, black=BLACK4, black_dim=(2, 2), white=WHITE, orientation=orientation,
                     color_matrix=CM, neutral=_neutral())
    r = read_raw(path)
    with rawpy.imread(str(path)) as raw:
        assert r.black_level_per_channel == tuple(int(v) for v in raw.black_level_per_channel)
        per = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        colours = orient(raw.raw_colors_visible, orientation)
    assert r.black_map is not None and np.array_equal(r.black_map, per[colours])
    assert np.array_equal(unorient(r.black_map, orientation)[:2, :2], np.reshape(BLACK4, (2, 2)))
    # LibRaw subtracts the same black from every sample: its output is (DN - black) times one common scale
    lr = _libraw_half(path)
    ours = r.mosaic.astype(np.float64) - r.black_map
    planes = [(_plane(ours, r.pattern, c), lr[..., i]) for i, c in enumerate("RGB") if c != "G"]
    k = sum(float((a * b).sum()) for a, b in planes) / sum(float((a * a).sum()) for a, _ in planes)
    for a, b in planes:
        assert np.abs(a * k - b).max() <= 1.0
    norm = r.normalized()
    np.testing.assert_allclose(norm, ours / (WHITE - r.black_map), rtol=1e-6)


def test_black_level_deltas(tmp_path):
    """BlackLevelDeltaH/V per column/row are kept exactly; LibRaw folds them into their mean."""
    mn = _mosaic(2)
    dh, dv = np.linspace(0.0, 10.0, W), np.linspace(0.0, 20.0, H)
    path = tmp_path / "d.dng"
    write_camera_dng(path, mn, "RGGB", black=BLACK4, black_dim=(2, 2), white=WHITE, black_delta_h=dh,
                     black_delta_v=dv, color_matrix=CM, neutral=_neutral())
    r = read_raw(path)
    expect = np.tile(np.reshape(BLACK4, (2, 2)), (H // 2, W // 2)) + dv[:, None] + dh[None, :]
    np.testing.assert_allclose(r.black_map, expect, atol=1e-3)  # rationals of 1/10000
    with rawpy.imread(str(path)) as raw:
        per = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        colours = raw.raw_colors_visible
    for c in range(4):
        assert abs(r.black_map[colours == c].mean() - per[c]) <= 1.0


def test_single_black_level_has_no_map(tmp_path):
    path = tmp_path / "s.dng"
    write_camera_dng(path, _mosaic(), "GRBG", black=(512,), white=WHITE, color_matrix=CM, neutral=_neutral())
    r = read_raw(path)
    assert r.black_map is None and r.sensor.black_level == 512 and r.black_level_per_channel == (512,) * 4


# --------------------------------------------------------------------------------------------- colour


@pytest.mark.parametrize("ab, cc", [(None, None), ((1.1, 1.0, 0.9), None), (None, CC), ((1.1, 1.0, 0.9), CC)],
                         ids=["plain", "analog-balance", "camera-calibration", "both"])
def test_colour_matches_libraw(tmp_path, ab, cc):
    """LibRaw's camera → sRGB matrix (``color_matrix``, for white-balanced data) and as-shot white balance of a
    D65 shot, with AnalogBalance and a non-diagonal CameraCalibration (measured: within 1e-7; ignoring the
    calibration would be 0.10 off)."""
    n = _neutral(ab, cc)
    path = tmp_path / "c.dng"
    write_camera_dng(path, _mosaic(), "RGGB", black=(0,), white=WHITE, color_matrix=CM, neutral=n,
                     analog_balance=ab, camera_calibration=cc, baseline_exposure=0.5)
    r = read_raw(path)
    with rawpy.imread(str(path)) as raw:
        libraw_cam2rgb = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
        wb = np.asarray(raw.camera_whitebalance, dtype=np.float64)
    np.testing.assert_allclose(r.isp.cam2rgb, libraw_cam2rgb, atol=1e-5)
    assert r.isp.red_gain == pytest.approx(wb[0] / wb[1], rel=1e-5)
    assert r.isp.blue_gain == pytest.approx(wb[2] / wb[1], rel=1e-5)
    assert r.isp.rgb_gain == pytest.approx(2 ** 0.5, rel=1e-6)  # BaselineExposure (LibRaw does not read it)


def _forward_matrix(cm: np.ndarray) -> np.ndarray:
    """The ForwardMatrix consistent with ``cm`` for a D65 white: white-balanced camera → XYZ D50 with
    FM @ 1 = D50."""
    n = cm @ D65
    cam2xyz = np.linalg.inv(cm) @ np.diag(n)  # white-balanced camera -> XYZ, 1 -> D65 (Y = 1)
    return bradford(D65_XY, D50_XY) @ cam2xyz


def test_forward_matrix(tmp_path):
    """A ForwardMatrix consistent with the ColorMatrix changes nothing (and agrees with LibRaw, which ignores
    ForwardMatrix); a different one is what the colour comes from (DNG spec: camera → XYZ D50)."""
    fm = _forward_matrix(CM)
    np.testing.assert_allclose(fm @ np.ones(3), np.array([D50_XY[0], D50_XY[1], 1 - sum(D50_XY)]) / D50_XY[1],
                               atol=1e-9)
    path = tmp_path / "f.dng"
    write_camera_dng(path, _mosaic(), "RGGB", black=(0,), white=WHITE, color_matrix=CM, neutral=_neutral(),
                     forward_matrix=fm)
    r = read_raw(path)
    with rawpy.imread(str(path)) as raw:
        libraw_cam2rgb = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
    np.testing.assert_allclose(r.isp.cam2rgb, libraw_cam2rgb, atol=2e-4)  # FM stored as 1/10000 rationals

    other = fm @ np.array([[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.0, 0.1, 0.9]])  # rows still sum to D50
    write_camera_dng(path, _mosaic(), "RGGB", black=(0,), white=WHITE, color_matrix=CM, neutral=_neutral(),
                     forward_matrix=other)
    r = read_raw(path)
    xyz2rgb = np.linalg.inv(np.asarray(RGB2XYZ))
    want = xyz2rgb @ bradford(D50_XY, D65_XY) @ read_dng_tags(path)["ForwardMatrix1"]
    np.testing.assert_allclose(r.isp.cam2rgb, want / want.sum(axis=1, keepdims=True), atol=1e-6)
    assert np.abs(np.asarray(r.isp.cam2rgb) - libraw_cam2rgb).max() > 0.05


def test_as_shot_white_xy_without_neutral(tmp_path):
    """``AsShotWhiteXY`` instead of ``AsShotNeutral``: the neutral is ColorMatrix @ XYZ(white)."""
    tags = {"ColorMatrix1": CM, "CalibrationIlluminant1": 21, "AsShotWhiteXY": D65_XY}
    isp = isp_from_dng_tags(tags)
    n = _neutral()
    assert isp.red_gain == pytest.approx(n[1] / n[0], rel=1e-9) and isp.blue_gain == pytest.approx(n[1] / n[2])


# --------------------------------------------------------------------------------------------- highlights


def test_clipped_highlights(tmp_path):
    mn = _mosaic(3)
    mn[10:20, 10:30] = WHITE  # a clipped patch
    mn[0, 0] = WHITE + 50  # some cameras store values above the white level
    path = tmp_path / "h.dng"
    write_camera_dng(path, mn, "RGGB", black=BLACK4, black_dim=(2, 2), white=WHITE, orientation=6,
                     color_matrix=CM, neutral=_neutral())
    r = read_raw(path)
    with rawpy.imread(str(path)) as raw:
        assert raw.white_level == r.sensor.white_level
        libraw_clipped = orient(raw.raw_image_visible >= raw.white_level, 6)
    sat = r.saturated()
    assert sat.dtype == bool and np.array_equal(sat, libraw_clipped) and sat.sum() == 201
    assert np.all(r.normalized()[sat] >= 1.0) and np.all(r.normalized()[~sat] < 1.0)


# --------------------------------------------------------------------------------------------- bad input


def test_bad_files_from_the_independent_writer(tmp_path):
    mn = _mosaic()
    cases = {
        "xtrans": dict(cfa_dim=(6, 6), cfa=(1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1) * 2),
        "quad": dict(cfa_dim=(4, 4), cfa=(0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1, 2, 2)),
        "deflate": dict(compression="zlib"),
    }
    want = {"xtrans": (UnsupportedCFAError, "unsupported CFA"), "quad": (UnsupportedCFAError, "unsupported CFA"),
            "deflate": (InputError, "unsupported compression")}
    for name, kw in cases.items():
        write_camera_dng(tmp_path / f"{name}.dng", mn, "RGGB", black=(512,), white=WHITE, **kw)
        with pytest.raises(InputError) as e:
            read_raw(tmp_path / f"{name}.dng")
        assert type(e.value) is want[name][0] and e.value.reason == want[name][1], str(e.value)
        assert e.value.hint
    write_camera_dng(tmp_path / "full.dng", mn, "RGGB", black=(512,), white=WHITE)
    data = (tmp_path / "full.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_raw(tmp_path / "cut.dng")
    assert type(e.value) is InputError and e.value.reason == "truncated"


def test_black_tags_that_do_not_fit_fall_back_to_libraw(tmp_path):
    """BlackLevelDeltaH of the wrong length: LibRaw's per-channel levels are used, and a note says so."""
    path = tmp_path / "bad-delta.dng"
    write_camera_dng(path, _mosaic(), "RGGB", black=BLACK4, black_dim=(2, 2), white=WHITE,
                     black_delta_h=np.zeros(W + 2), color_matrix=CM, neutral=_neutral())
    r = read_raw(path)
    with rawpy.imread(str(path)) as raw:
        per = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        colours = raw.raw_colors_visible
    assert np.array_equal(r.black_map, per[colours])
    assert any("do not fit" in n for n in r.notes)
