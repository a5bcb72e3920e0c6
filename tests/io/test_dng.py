"""DNG writer and RAW reader, checked against an independent decoder (rawpy / LibRaw).

The data are built the way the library builds them: a real photo → IPTP (``unprocess``) → mosaic →
quantise to 12-bit DN (black 256, white 4095).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import rawpy
import tifffile
import torch
from skimage import data

from rawsynth.errors import ConfigError, InputError, ShapeError, UnsupportedCFAError
from rawsynth.io.dng import read_dng_tags, write_dng, xyz2cam_from_rgb2cam
from rawsynth.io.png16 import write_png16
from rawsynth.io.raw import RawImage, read_raw
from rawsynth.isp.iptp import unprocess
from rawsynth.isp.params import RGB2XYZ, fixed_isp_params, rgb2cam_from_xyz2cam, sample_isp_params
from rawsynth.isp.ptp import gamma, process, tone
from rawsynth.mns.cfa import Pattern, demosaic_bilinear, mosaic
from rawsynth.mns.sensor import SensorParams, normalize, quantize

from ..conftest import input_error

SENSOR = SensorParams(12, 256, 4095)
ISPS = {"fixed": fixed_isp_params(), "sampled": sample_isp_params(np.random.default_rng(1))}
#: The same mosaic labelled with R and B swapped: a wrong pattern.
SWAP_RB = {Pattern.RGGB: Pattern.BGGR, Pattern.BGGR: Pattern.RGGB, Pattern.GRBG: Pattern.GBRG,
           Pattern.GBRG: Pattern.GRBG}
BORDER = 4  # pixels dropped on each side before PSNR (demosaic borders differ between implementations)

params = pytest.mark.parametrize("isp_name", list(ISPS))
patterns = pytest.mark.parametrize("pattern", list(Pattern), ids=[p.value for p in Pattern])


@pytest.fixture(scope="module")
def srgb() -> torch.Tensor:
    """astronaut, 512×512, as a (1, 3, H, W) float tensor in [0, 1]."""
    img = data.astronaut().astype(np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


_CACHE: dict = {}


def _synth(srgb: torch.Tensor, pattern: Pattern, isp) -> tuple[np.ndarray, torch.Tensor]:
    """``(mosaic DN (H, W) uint16, the same as a (1, 1, H, W) uint16 tensor)``, built as the library does:
    sRGB → ``unprocess`` → ``mosaic`` → ``quantize``. Cached per input (the tests never modify it)."""
    key = (srgb.data_ptr(), tuple(srgb.shape), pattern, isp.to_json())
    if key not in _CACHE:
        lin = unprocess(srgb, isp)
        m = quantize(mosaic(lin, pattern), SENSOR)
        _CACHE[key] = (m[0, 0].numpy().copy(), m)
    mn, m = _CACHE[key]
    return mn.copy(), m


def _rawpy_pattern(raw) -> str:
    desc = raw.color_desc.decode()
    return "".join(desc[i] for i in raw.raw_pattern.ravel())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    a = a[BORDER:-BORDER, BORDER:-BORDER]
    b = b[BORDER:-BORDER, BORDER:-BORDER]
    return 10.0 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


def _libraw_develop(path, rgb_gain: float) -> np.ndarray:
    """LibRaw's own development with the camera white balance, finished with our gamma and tone.

    ``bright`` multiplies LibRaw's output by ``rgb_gain`` (checked: the same PSNR to 1e-3 dB as
    ``bright=1`` followed by a manual gain), so nothing else of ours touches LibRaw's linear sRGB.
    """
    with rawpy.imread(str(path)) as raw:
        out = raw.postprocess(use_camera_wb=True, no_auto_bright=True, bright=rgb_gain, gamma=(1, 1),
                              output_bps=16, output_color=rawpy.ColorSpace.sRGB,
                              demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, user_flip=0,
                              highlight_mode=rawpy.HighlightMode.Clip)
    lin = torch.from_numpy(out.astype(np.float32) / 65535.0)
    return tone(gamma(lin.clamp(0.0, 1.0))).numpy()


def _our_develop(m: torch.Tensor, pattern: Pattern, isp) -> np.ndarray:
    rgb = process(demosaic_bilinear(normalize(m, SENSOR), pattern), isp)
    return rgb[0].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------- rawpy


@params
@patterns
def test_rawpy_reads_identical_mosaic_and_levels(tmp_path, srgb, pattern, isp_name):
    mn, _ = _synth(srgb, pattern, ISPS[isp_name])
    path = tmp_path / "x.dng"
    write_dng(path, mn, pattern, SENSOR, ISPS[isp_name], iso=800)
    with rawpy.imread(str(path)) as raw:
        assert raw.raw_image_visible.dtype == np.uint16
        assert np.array_equal(raw.raw_image_visible, mn)
        assert _rawpy_pattern(raw) == pattern.value
        assert list(raw.black_level_per_channel) == [256] * 4
        assert raw.white_level == 4095
        assert raw.num_colors == 3
        assert raw.sizes.flip == 0


@params
@patterns
def test_read_raw_round_trip(tmp_path, srgb, pattern, isp_name):
    isp = ISPS[isp_name]
    mn, m = _synth(srgb, pattern, isp)
    path = tmp_path / "x.dng"
    write_dng(path, mn, pattern, SENSOR, isp, iso=800)
    r = read_raw(path)
    assert isinstance(r, RawImage)
    assert r.mosaic.dtype == np.uint16 and np.array_equal(r.mosaic, mn)
    assert r.pattern is pattern
    assert r.sensor == SENSOR
    assert r.black_level_per_channel == (256, 256, 256, 256)
    assert r.iso == 800.0
    assert r.path == os.fspath(path)
    assert r.notes == ()
    assert r.isp is not None
    np.testing.assert_allclose(r.isp.rgb2cam, isp.rgb2cam, atol=1e-4)
    np.testing.assert_allclose(r.isp.cam2rgb, isp.cam2rgb, atol=1e-4)
    for name in ("rgb_gain", "red_gain", "blue_gain"):
        assert getattr(r.isp, name) == pytest.approx(getattr(isp, name), abs=1e-4), name
    norm = r.normalized()
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm, normalize(m, SENSOR)[0, 0].numpy(), atol=1e-6)


@params
def test_dng_tags(tmp_path, srgb, isp_name):
    isp = ISPS[isp_name]
    mn, _ = _synth(srgb, Pattern.GRBG, isp)
    path = tmp_path / "x.dng"
    write_dng(path, mn, Pattern.GRBG, SENSOR, isp, iso=1600, make="Acme", model="One")
    t = read_dng_tags(path)
    assert t["DNGVersion"] == (1, 4, 0, 0) and t["DNGBackwardVersion"] == (1, 1, 0, 0)
    assert (t["Make"], t["Model"], t["UniqueCameraModel"]) == ("Acme", "One", "Acme One")
    assert t["NewSubfileType"] == 0 and t["PhotometricInterpretation"] == 32803 and t["Compression"] == 1
    assert t["CFARepeatPatternDim"] == (2, 2) and t["CFAPattern"] == (1, 0, 2, 1)
    assert t["BlackLevelRepeatDim"] == (1, 1) and t["BlackLevel"] == (256.0,) and t["WhiteLevel"] == (4095,)
    assert t["Orientation"] == 1 and t["CalibrationIlluminant1"] == 21 and t["ISOSpeedRatings"] == 1600
    assert t["BaselineExposure"] == pytest.approx(math.log2(isp.rgb_gain), abs=1e-9)
    np.testing.assert_allclose(t["AsShotNeutral"], (1 / isp.red_gain, 1.0, 1 / isp.blue_gain), rtol=1e-9)
    neutral = (1 / isp.red_gain, 1.0, 1 / isp.blue_gain)
    np.testing.assert_allclose(t["ColorMatrix1"], xyz2cam_from_rgb2cam(isp.rgb2cam, neutral), atol=1e-6)
    # ColorMatrix1 maps D65 (sRGB white in XYZ) to AsShotNeutral, so the SDK's as-shot white is D65 ...
    np.testing.assert_allclose(t["ColorMatrix1"] @ np.sum(RGB2XYZ, axis=1), neutral, atol=1e-6)
    # ... and LibRaw's row normalisation of ColorMatrix1 @ RGB2XYZ removes the diagonal: rgb2cam comes back
    np.testing.assert_allclose(rgb2cam_from_xyz2cam(t["ColorMatrix1"]), isp.rgb2cam, atol=1e-6)
    assert t["DefaultCropOrigin"] == (2.0, 2.0) and t["DefaultCropSize"] == (508.0, 508.0)
    assert (t["ImageLength"], t["ImageWidth"], t["BitsPerSample"]) == (512, 512, 16)
    with tifffile.TiffFile(path) as tif:
        assert 34855 not in tif.pages.first.tags  # ISO only in the EXIF IFD
    assert sum(t["StripByteCounts"]) == mn.nbytes


def test_dng_without_isp_or_iso(tmp_path):
    mn = np.full((24, 30), 300, np.uint16)
    write_dng(tmp_path / "x.dng", mn, "BGGR", SENSOR)
    t = read_dng_tags(tmp_path / "x.dng")
    assert not {"ColorMatrix1", "AsShotNeutral", "BaselineExposure", "ISOSpeedRatings"} & set(t)
    assert t["DefaultCropSize"] == (26.0, 20.0)  # (width, height) inside a 2-pixel margin
    r = read_raw(tmp_path / "x.dng")
    assert r.isp is None and r.iso is None and r.pattern is Pattern.BGGR
    assert np.array_equal(r.mosaic, mn)


# Measured PSNR (dB, astronaut 512x512, 4-pixel border dropped) of LibRaw's development vs ours:
#                 RGGB    BGGR    GRBG    GBRG
#   fixed         51.50   52.00   51.66   51.50
#   sampled(1)    50.83   51.32   50.77   50.42
#   wrong pattern (R<->B swapped): 12.86 .. 13.44 in every case.
# ~99% of the residual MSE sits in the ~2% of near-white pixels, where the clipping order differs: LibRaw
# clips after white balance and CCM and applies ``bright`` (= rgb_gain) last, ours clips after
# rgb_gain * white balance. Mid-tones and shadows agree to ~1e-4.
@params
@patterns
def test_libraw_development_matches_process(tmp_path, srgb, pattern, isp_name):
    isp = ISPS[isp_name]
    mn, m = _synth(srgb, pattern, isp)
    ours = _our_develop(m, pattern, isp)
    write_dng(tmp_path / "right.dng", mn, pattern, SENSOR, isp)
    right = _psnr(_libraw_develop(tmp_path / "right.dng", isp.rgb_gain), ours)
    write_dng(tmp_path / "wrong.dng", mn, SWAP_RB[pattern], SENSOR, isp)
    wrong = _psnr(_libraw_develop(tmp_path / "wrong.dng", isp.rgb_gain), ours)
    assert right >= 45.0, f"{pattern.value}/{isp_name}: {right:.2f} dB"
    assert wrong <= 20.0, f"wrong pattern still matches: {wrong:.2f} dB"


def test_development_is_sensitive_to_white_balance_and_gain(tmp_path, srgb):
    """A wrong white balance in the DNG, or no brightness gain, must fail the comparison too (measured:
    red gain x1.25 → 25.1 dB; ``bright=1`` instead of rgb_gain 1.25 → 23.7 dB)."""
    isp = ISPS["fixed"]
    mn, m = _synth(srgb, Pattern.RGGB, isp)
    ours = _our_develop(m, Pattern.RGGB, isp)
    write_dng(tmp_path / "x.dng", mn, Pattern.RGGB, SENSOR, isp)
    assert _psnr(_libraw_develop(tmp_path / "x.dng", 1.0), ours) < 35.0  # LibRaw does apply ``bright``
    off = type(isp).from_rgb2cam(isp.rgb2cam, isp.rgb_gain, isp.red_gain * 1.25, isp.blue_gain)
    write_dng(tmp_path / "x.dng", mn, Pattern.RGGB, SENSOR, off)
    assert _psnr(_libraw_develop(tmp_path / "x.dng", isp.rgb_gain), ours) < 35.0


# --------------------------------------------------------------------------------------------- writing


def test_atomic_write(tmp_path):
    mn = np.full((24, 24), 500, np.uint16)
    path = tmp_path / "x.dng"
    write_dng(path, mn, "RGGB", SENSOR)
    write_dng(path, mn + 1, "RGGB", SENSOR)
    assert np.array_equal(read_raw(path).mosaic, mn + 1)
    with pytest.raises(ShapeError):
        write_dng(path, mn.astype(np.float32), "RGGB", SENSOR)
    assert np.array_equal(read_raw(path).mosaic, mn + 1)
    assert os.listdir(tmp_path) == ["x.dng"]


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4), np.float32), "uint16"),
    (np.zeros((4, 4), np.int32), "uint16"),
    (np.zeros((4, 4), np.uint8), "uint16"),
    (np.zeros((1, 1, 4, 4), np.uint16), "2-D"),
    (np.zeros((4, 4, 3), np.uint16), "2-D"),
    (np.zeros((5, 4), np.uint16), "even"),
    (np.zeros((4, 7), np.uint16), "even"),
    (np.zeros((0, 4), np.uint16), "even"),
    (np.full((4, 4), 4096, np.uint16), "white level"),
    (torch.zeros((4, 4), dtype=torch.int32), "numpy"),
])
def test_write_rejects_bad_mosaic(tmp_path, bad, match):
    with pytest.raises(ShapeError, match=match):
        write_dng(tmp_path / "x.dng", bad, "RGGB", SENSOR)
    assert not os.listdir(tmp_path)


def test_write_rejects_bad_arguments(tmp_path):
    mn = np.zeros((4, 4), np.uint16)
    with pytest.raises(ShapeError, match="pattern"):
        write_dng(tmp_path / "x.dng", mn, "RGBG", SENSOR)
    with pytest.raises(ConfigError, match="sensor"):
        write_dng(tmp_path / "x.dng", mn, "RGGB", {"black_level": 0})
    with pytest.raises(ConfigError, match="iso"):
        write_dng(tmp_path / "x.dng", mn, "RGGB", SENSOR, iso=0)
    with pytest.raises(ConfigError, match="isp"):
        write_dng(tmp_path / "x.dng", mn, "RGGB", SENSOR, isp="fixed")
    with pytest.raises(ConfigError, match="make"):
        write_dng(tmp_path / "x.dng", mn, "RGGB", SENSOR, make="")
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------------- reading errors


def test_not_raw_files(tmp_path):
    write_png16(tmp_path / "x.png", np.zeros((8, 8), np.uint16))
    (tmp_path / "x.txt").write_text("not a raw file\n" * 20)
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint16))  # a TIFF, but no DNG/CFA
    for name in ("x.png", "x.txt", "x.tif"):
        with pytest.raises(InputError) as e:
            read_raw(tmp_path / name)
        assert type(e.value) is InputError and e.value.reason == "not a RAW file", name
    with pytest.raises(InputError) as e:
        read_dng_tags(tmp_path / "x.tif")
    assert e.value.reason == "not a DNG"


def test_dng_too_small_for_libraw(tmp_path):
    """A 20x24 DNG is valid, but LibRaw refuses anything under 22 px on a side: say so, not "not a RAW file"."""
    write_dng(tmp_path / "x.dng", np.full((20, 24), 300, np.uint16), "RGGB", SENSOR)
    assert read_dng_tags(tmp_path / "x.dng")["ImageLength"] == 20
    with pytest.raises(InputError, match="22") as e:
        read_raw(tmp_path / "x.dng")
    assert e.value.reason == "unreadable"


def test_a_folder_is_unreadable(tmp_path):  # missing and empty files: tests/io/test_read_errors.py
    assert input_error(read_raw, tmp_path).reason == "unreadable"


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01, 300, 100, 8, 3])
def test_truncated_dng(tmp_path, srgb, keep):
    """Cut inside the strip data (our tag check reports it before LibRaw), inside the IFD or the header
    (LibRaw's I/O error). LibRaw alone also refuses a cut strip (``LibRawIOError``), but not by name."""
    mn, _ = _synth(srgb[..., :64, :64], Pattern.RGGB, ISPS["fixed"])
    write_dng(tmp_path / "x.dng", mn, Pattern.RGGB, SENSOR, ISPS["fixed"])
    full = (tmp_path / "x.dng").read_bytes()
    n = int(len(full) * keep) if isinstance(keep, float) else keep
    (tmp_path / "cut.dng").write_bytes(full[:n])
    with pytest.raises(InputError) as e:
        read_raw(tmp_path / "cut.dng")
    assert type(e.value) is InputError and e.value.reason == "truncated", str(e.value)


def _hand_written_dng(path, mosaic_dn, dim, cfa, photometric=32803):
    tags = [(33421, "H", 2, dim, True), (33422, "B", len(cfa), bytes(cfa), True),
            (50706, "B", 4, bytes((1, 4, 0, 0)), True), (50707, "B", 4, bytes((1, 1, 0, 0)), True),
            (271, "s", 0, "x", True), (272, "s", 0, "y", True), (50708, "s", 0, "x y", True),
            (50714, "I", 1, 256, True), (50717, "I", 1, 4095, True)]
    if photometric != 32803:
        tags = tags[2:]
    tifffile.imwrite(path, mosaic_dn, photometric=photometric, compression=None, metadata=None, subfiletype=0,
                     software=False, extratags=tags)


QUAD_BAYER = (0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1, 2, 2)
XTRANS = (1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1, 1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1)


@pytest.mark.parametrize("dim, cfa", [((4, 4), QUAD_BAYER), ((6, 6), XTRANS), ((2, 2), (0, 0, 1, 2)),
                                      ((2, 2), (0, 1, 1, 1))],
                         ids=["quad-bayer-4x4", "x-trans-6x6", "RRGB", "RGGG"])
def test_non_bayer_cfa(tmp_path, dim, cfa):
    mn = np.random.default_rng(0).integers(256, 4096, (48, 48)).astype(np.uint16)
    _hand_written_dng(tmp_path / "x.dng", mn, dim, cfa)
    with pytest.raises(UnsupportedCFAError) as e:
        read_raw(tmp_path / "x.dng")
    assert e.value.reason == "unsupported CFA" and e.value.hint


def test_linear_dng_has_no_cfa(tmp_path):
    _hand_written_dng(tmp_path / "x.dng", np.zeros((32, 32, 3), np.uint16), (2, 2), (0, 1, 1, 2), photometric=34892)
    with pytest.raises(UnsupportedCFAError, match="no CFA"):
        read_raw(tmp_path / "x.dng")


def test_odd_visible_area_is_cropped_and_noted(tmp_path):
    mn = np.random.default_rng(0).integers(256, 4096, (33, 47)).astype(np.uint16)
    _hand_written_dng(tmp_path / "x.dng", mn, (2, 2), Pattern.GBRG.cfa_bytes)
    with pytest.warns(UserWarning, match="cropped"):
        r = read_raw(tmp_path / "x.dng")
    assert r.mosaic.shape == (32, 46) and np.array_equal(r.mosaic, mn[:32, :46])
    assert r.pattern is Pattern.GBRG and any("cropped" in n for n in r.notes)


def test_iso_is_visible_to_libraw_through_the_exif_ifd(tmp_path):
    """LibRaw reads ISO only from an EXIF IFD; tifffile cannot write one, so write_dng appends it."""
    mosaic_dn = np.full((32, 32), 300, np.uint16)
    write_dng(tmp_path / "a.dng", mosaic_dn, "BGGR", SENSOR, fixed_isp_params(), iso=1600)
    with rawpy.imread(str(tmp_path / "a.dng")) as raw:
        assert raw.other.iso_speed == 1600
        assert np.array_equal(raw.raw_image_visible, mosaic_dn)
    assert read_dng_tags(tmp_path / "a.dng")["ISOSpeedRatings"] == 1600
    with tifffile.TiffFile(tmp_path / "a.dng") as tif:
        assert tif.pages.first.tags[34665].value == {"ISOSpeedRatings": 1600}
        assert 34666 not in tif.pages.first.tags  # the placeholder is gone
    write_dng(tmp_path / "b.dng", mosaic_dn, "BGGR", SENSOR, fixed_isp_params(), iso=1600)
    assert (tmp_path / "a.dng").read_bytes() == (tmp_path / "b.dng").read_bytes()  # deterministic
