"""DNGs from :func:`rawsynth.io.write_dng` opened by readers we did not write: exiftool's validator, Adobe's DNG
SDK (through the PyPI package ``dngpy``), and the DNG colour model's as-shot white (the SDK's formula, written
out here from the specification, not through ``rawsynth.io.dng_color``). LibRaw's development of the same files
is compared with ours in ``test_dng.py::test_libraw_development_matches_process``.

exiftool comes from Debian's ``libimage-exiftool-perl`` (``make test`` installs it); dngpy from the ``[dev]``
extras. Each test skips, saying why, only when its tool is missing.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

from rawsynth.io.dng import read_dng_tags, write_dng, xyz2cam_from_rgb2cam
from rawsynth.io.raw import read_raw
from rawsynth.isp.params import RGB2XYZ, fixed_isp_params, sample_isp_params
from rawsynth.mns.cfa import Pattern
from rawsynth.mns.sensor import SensorParams

SENSOR = SensorParams(12, 256, 4095)
ISPS = {"fixed": fixed_isp_params(), "sampled": sample_isp_params(np.random.default_rng(1))}
D65_XY = (0.3127, 0.3290)
patterns = pytest.mark.parametrize("pattern", list(Pattern), ids=[p.value for p in Pattern])
params = pytest.mark.parametrize("isp_name", list(ISPS))


def _mosaic(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(200, 4096, (h, w)).astype(np.uint16)


def _dng(tmp_path, pattern: Pattern, isp_name: str = "fixed", iso: int | None = 800, name: str = "x.dng"):
    path = tmp_path / name
    mn = _mosaic()
    write_dng(path, mn, pattern, SENSOR, ISPS[isp_name] if isp_name else None, iso=iso)
    return path, mn


# --------------------------------------------------------------------------------------------- exiftool


def _exiftool() -> str:
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.skip("exiftool is not installed (Debian: apt-get install libimage-exiftool-perl; make test does it)")
    return exe


@patterns
@pytest.mark.parametrize("isp_name, iso", [("fixed", 800), ("sampled", 100), (None, None)],
                         ids=["fixed-iso800", "sampled-iso100", "bare"])
def test_exiftool_validate_ok(tmp_path, pattern, isp_name, iso):
    path, _ = _dng(tmp_path, pattern, isp_name, iso)
    out = subprocess.run([_exiftool(), "-validate", "-warning", "-error", "-a", "-G1", str(path)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "Validate                        : OK" in out, out
    assert "Warning" not in out and "Error" not in out, out


def test_exiftool_reads_the_tags_as_written(tmp_path):
    path, _ = _dng(tmp_path, Pattern.GRBG, "sampled", 1600)
    out = subprocess.run([_exiftool(), "-a", "-n", "-s", "-G1", "-ISO", "-AsShotNeutral", "-BaselineExposure",
                          "-DefaultCropOrigin", "-DefaultCropSize", "-CFAPattern2", "-BlackLevel", "-WhiteLevel",
                          str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
    got = {line.split(":", 1)[0].split()[-1]: line.split(":", 1)[1].strip() for line in out.splitlines()}
    groups = {line.split(":", 1)[0].split()[-1]: line.split()[0] for line in out.splitlines()}
    isp = ISPS["sampled"]
    assert got["ISO"] == "1600" and groups["ISO"] == "[ExifIFD]"
    assert sum(line.split()[1] == "ISO" for line in out.splitlines()) == 1  # -a would list a copy in IFD0
    np.testing.assert_allclose([float(v) for v in got["AsShotNeutral"].split()],
                               (1 / isp.red_gain, 1, 1 / isp.blue_gain), rtol=1e-6)
    assert float(got["BaselineExposure"]) == pytest.approx(math.log2(isp.rgb_gain), abs=1e-6)
    assert got["DefaultCropOrigin"] == "2 2" and got["DefaultCropSize"] == "60 44"
    assert got["CFAPattern2"] == "1 0 2 1" and got["BlackLevel"] == "256" and got["WhiteLevel"] == "4095"


# --------------------------------------------------------------------------------------------- DNG SDK


def _dngpy():
    return pytest.importorskip("dngpy", reason="dngpy (Adobe DNG SDK bindings) is not installed: pip install "
                               "-e '.[dev]'")


@patterns
@params
def test_dng_sdk_opens_without_warnings_and_reads_the_tags(tmp_path, capfd, pattern, isp_name):
    dngpy = _dngpy()
    path, mn = _dng(tmp_path, pattern, isp_name, 800)
    capfd.readouterr()
    d = dngpy.Dng(str(path))
    meta, pixels = d.metadata, d.raw_pixels
    wb, exposure, bayer = d.get_white_balance(), d.get_baseline_exposure(), d.get_bayer_pattern()
    err = capfd.readouterr().err
    assert err == "", f"the DNG SDK warned: {err}"  # e.g. 'Too little padding' without DefaultCrop tags
    isp = ISPS[isp_name]
    assert bayer == pattern.value
    assert (meta.make, meta.model, meta.iso) == ("rawsynth", "synthetic", 800)
    assert (meta.raw_width, meta.raw_height) == (64, 48)
    np.testing.assert_allclose(wb, (1 / isp.red_gain, 1.0, 1 / isp.blue_gain), rtol=1e-5)  # AsShotNeutral
    assert exposure == pytest.approx(math.log2(isp.rgb_gain), abs=0.005)  # dngpy rounds it to 0.01 EV
    assert pixels.dtype == np.uint16 and np.array_equal(pixels[..., 0], mn)


def test_dng_sdk_warns_without_the_crop_margin(tmp_path, capfd):
    """The check above is able to fail: a 4-pixel-wide mosaic gets no crop tags and the SDK complains."""
    dngpy = _dngpy()
    write_dng(tmp_path / "thin.dng", np.full((4, 64), 300, np.uint16), Pattern.RGGB, SENSOR, ISPS["fixed"])
    capfd.readouterr()
    dngpy.Dng(str(tmp_path / "thin.dng"))
    assert "Too little padding" in capfd.readouterr().err


# --------------------------------------------------------------------------------------------- colour chain


def _white_xy(color_matrix: np.ndarray, neutral) -> tuple[float, float]:
    """DNG spec (chapter 6): with one ColorMatrix the as-shot white is XYZ = inv(ColorMatrix) @ AsShotNeutral."""
    xyz = np.linalg.solve(color_matrix, np.asarray(neutral, dtype=np.float64))
    return xyz[0] / xyz.sum(), xyz[1] / xyz.sum()


@params
@patterns
def test_as_shot_white_is_d65(tmp_path, pattern, isp_name):
    path, _ = _dng(tmp_path, pattern, isp_name)
    t = read_dng_tags(path)
    x, y = _white_xy(t["ColorMatrix1"], t["AsShotNeutral"])
    assert t["CalibrationIlluminant1"] == 21  # the matrix is for D65
    assert math.hypot(x - D65_XY[0], y - D65_XY[1]) < 0.003, (x, y)


def test_old_matrix_implied_a_green_white(tmp_path):
    """Without diag(AsShotNeutral) the same formula gives the green white the SDK rendered (issue 14)."""
    isp = ISPS["fixed"]
    x, y = _white_xy(xyz2cam_from_rgb2cam(isp.rgb2cam), (1 / isp.red_gain, 1, 1 / isp.blue_gain))
    assert math.hypot(x - D65_XY[0], y - D65_XY[1]) > 0.05 and y > 0.4


@params
def test_round_trip_through_read_raw(tmp_path, isp_name):
    """``read_raw(write_dng(x)) == x``: the full mosaic (not the default crop), pattern, sensor, ISP, ISO."""
    isp = ISPS[isp_name]
    for pattern in Pattern:
        path, mn = _dng(tmp_path, pattern, isp_name, 3200, name=f"{pattern.value}.dng")
        r = read_raw(path)
        assert np.array_equal(r.mosaic, mn) and r.pattern is pattern and r.sensor == SENSOR
        assert r.iso == 3200 and r.orientation == 1 and r.black_map is None
        np.testing.assert_allclose(r.isp.rgb2cam, isp.rgb2cam, atol=1e-6)
        for name in ("rgb_gain", "red_gain", "blue_gain"):
            assert getattr(r.isp, name) == pytest.approx(getattr(isp, name), abs=1e-6), name


def test_d65_maps_to_as_shot_neutral_for_any_isp():
    for seed in range(20):
        isp = sample_isp_params(np.random.default_rng(seed))
        n = (1 / isp.red_gain, 1.0, 1 / isp.blue_gain)
        m = xyz2cam_from_rgb2cam(isp.rgb2cam, n)
        np.testing.assert_allclose(m @ np.sum(RGB2XYZ, axis=1), n, atol=1e-9)
