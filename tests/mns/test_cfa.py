"""CFA: layouts, mosaic/pack/unpack, bilinear demosaic against OpenCV, flip and crop bookkeeping."""

import cv2
import numpy as np
import pytest
import torch

from rawsynth.errors import ShapeError
from rawsynth.isp import fixed_isp_params, unprocess
from rawsynth.mns import (DemosaicBilinear, Mosaic, Pattern, cfa_masks, crop, demosaic_bilinear, hflip, mosaic,
                          pack, unpack, vflip)

from ..conftest import photo, psnr

# OpenCV names a Bayer layout by the 2nd and 3rd pixels of its 2nd row, so its "BG" is our RGGB.
OPENCV_BAYER = {
    Pattern.RGGB: cv2.COLOR_BayerBG2RGB,
    Pattern.BGGR: cv2.COLOR_BayerRG2RGB,
    Pattern.GRBG: cv2.COLOR_BayerGB2RGB,
    Pattern.GBRG: cv2.COLOR_BayerGR2RGB,
}


def test_opencv_naming_matches_its_newer_explicit_aliases():
    for p, code in OPENCV_BAYER.items():
        alias = getattr(cv2, f"COLOR_Bayer{p.value}2RGB", None)
        if alias is not None:
            assert alias == code


def test_layout_and_offsets():
    x = torch.stack([torch.full((4, 4), float(c)) for c in range(3)])[None]  # channel c has value c
    for p in Pattern:
        m = mosaic(x, p)[0, 0]
        assert m[:2, :2].long().tolist() == [list(r) for r in p.colors]
        assert torch.equal(m[:2, :2], m[2:, 2:])  # 2x2 periodic
        r, g1, g2, b = p.offsets
        assert p.value[2 * r[0] + r[1]] == "R" and p.value[2 * b[0] + b[1]] == "B"
        assert g1[0] == r[0] and g2[0] == b[0]  # G1 shares the red row, G2 the blue row
    assert Pattern("RGGB") is Pattern.RGGB and Pattern.RGGB.cfa_bytes == (0, 1, 1, 2)


@pytest.mark.parametrize("pattern", list(Pattern))
def test_pack_unpack_round_trip_and_plane_contents(pattern):
    x = unprocess(photo("astronaut", 64), fixed_isp_params())
    m = mosaic(x, pattern)
    packed = pack(m, pattern)
    assert packed.shape == (1, 4, 32, 32)
    assert torch.equal(unpack(packed, pattern), m)
    # plane 0 is the red channel at the red sites, plane 3 blue, planes 1-2 green
    (ry, rx), (g1y, g1x), (g2y, g2x), (by, bx) = pattern.offsets
    assert torch.equal(packed[0, 0], x[0, 0, ry::2, rx::2])
    assert torch.equal(packed[0, 1], x[0, 1, g1y::2, g1x::2])
    assert torch.equal(packed[0, 2], x[0, 1, g2y::2, g2x::2])
    assert torch.equal(packed[0, 3], x[0, 2, by::2, bx::2])


def test_mixed_patterns_in_one_batch_equal_one_at_a_time(photos):
    lin = unprocess(photos, fixed_isp_params())
    pats = list(Pattern)
    m = mosaic(lin, pats)
    for i, p in enumerate(pats):
        assert torch.equal(m[i:i + 1], mosaic(lin[i:i + 1], p))
        assert torch.equal(pack(m, pats)[i:i + 1], pack(m[i:i + 1], p))
        assert torch.equal(demosaic_bilinear(m, pats)[i:i + 1], demosaic_bilinear(m[i:i + 1], p))
    assert torch.equal(unpack(pack(m, pats), pats), m)


@pytest.mark.parametrize("pattern", list(Pattern))
def test_demosaic_matches_opencv_bilinear_in_the_interior(pattern):
    lin = unprocess(photo("chelsea"), fixed_isp_params())
    m = mosaic(lin, pattern)
    ours = demosaic_bilinear(m, pattern)[0].permute(1, 2, 0).numpy()
    u16 = np.round(m[0, 0].numpy() * 65535).astype(np.uint16)
    ref = cv2.cvtColor(u16, OPENCV_BAYER[pattern]).astype(np.float64) / 65535
    assert np.abs(ours[2:-2, 2:-2] - ref[2:-2, 2:-2]).max() < 2e-4  # same algorithm, uint16 rounding


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
@pytest.mark.parametrize("pattern", list(Pattern))
def test_independent_demosaic_recovers_the_image_and_a_wrong_pattern_fails(name, pattern):
    """OpenCV's demosaic (an independent implementation) of our noise-free mosaic reproduces the linear image;
    reading the same mosaic with any other pattern does not. Measured (256² crops): right pattern 36.6-44.7 dB;
    wrong patterns 19.2-32.1 dB, always >= 8.2 dB below the right one (the R<->B swap is the closest)."""
    lin = unprocess(photo(name), fixed_isp_params())
    u16 = np.round(mosaic(lin, pattern)[0, 0].numpy() * 65535).astype(np.uint16)
    target = lin[0].permute(1, 2, 0).numpy().astype(np.float64)[4:-4, 4:-4]

    def score(p):
        rgb = cv2.cvtColor(u16, OPENCV_BAYER[p]).astype(np.float64)[4:-4, 4:-4] / 65535
        return psnr(torch.from_numpy(rgb), torch.from_numpy(target))

    right = score(pattern)
    assert right > 35.0, right
    for other in Pattern:
        if other is not pattern:
            assert score(other) < right - 6.0, (other, score(other), right)


def test_demosaic_keeps_measured_pixels_and_handles_borders():
    lin = unprocess(photo("coffee", 32), fixed_isp_params())
    for p in Pattern:
        m = mosaic(lin, p)
        d = demosaic_bilinear(m, p)
        assert torch.allclose(mosaic(d, p), m, atol=1e-6)
        assert torch.isfinite(d).all()
    flat = torch.full((1, 1, 6, 8), 0.3)
    assert torch.allclose(demosaic_bilinear(flat, "GBRG"), torch.full((1, 3, 6, 8), 0.3))


def test_masks_partition_the_pixels():
    m = cfa_masks(list(Pattern), 4, 6, 6)
    assert torch.equal(m.sum(1), torch.ones(4, 6, 6))
    assert m[:, 1].mean() == 0.5 and m[:, 0].mean() == 0.25


def _full_rgb(h=8, w=10):
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, h, w, generator=g)


@pytest.mark.parametrize("pattern", list(Pattern))
@pytest.mark.parametrize("h,w", [(8, 10), (7, 9)])
def test_flips_track_the_pattern(pattern, h, w):
    """Flipping the mosaic equals mosaicking the flipped image with the returned pattern (any size)."""
    x = _full_rgb(h, w)
    m = mosaic(x, pattern)
    fm, fp = hflip(m, pattern)
    assert torch.equal(fm, mosaic(x.flip(-1), fp))
    fm, fp = vflip(m, pattern)
    assert torch.equal(fm, mosaic(x.flip(-2), fp))


def test_known_flip_results():
    assert hflip(torch.zeros(1, 1, 4, 4), "RGGB")[1] is Pattern.GRBG
    assert vflip(torch.zeros(1, 1, 4, 4), "RGGB")[1] is Pattern.GBRG
    assert hflip(torch.zeros(1, 1, 4, 5), "RGGB")[1] is Pattern.RGGB  # odd width keeps the phase


@pytest.mark.parametrize("pattern", list(Pattern))
@pytest.mark.parametrize("top,left", [(0, 0), (1, 0), (0, 1), (1, 1), (3, 2)])
def test_crop_tracks_the_pattern(pattern, top, left):
    x = _full_rgb(12, 12)
    m = mosaic(x, pattern)
    cm, cp = crop(m, pattern, top, left, 6, 6)
    assert torch.equal(cm, mosaic(x[..., top:top + 6, left:left + 6], cp))


def test_per_sample_patterns_for_flip_and_crop_return_lists():
    m = torch.zeros(2, 1, 4, 4)
    assert hflip(m, ["RGGB", "BGGR"])[1] == [Pattern.GRBG, Pattern.GBRG]
    assert crop(m, [Pattern.RGGB, Pattern.GBRG], 1, 1, 2, 2)[1] == [Pattern.BGGR, Pattern.GRBG]


def test_gradients_flow_through_mosaic_and_demosaic():
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: demosaic_bilinear(mosaic(t, "GRBG"), "GRBG"), (x,))


def test_modules_equal_functions():
    x = _full_rgb(8, 8)
    assert torch.equal(Mosaic()(x, "BGGR"), mosaic(x, "BGGR"))
    m = mosaic(x, "BGGR")
    assert torch.equal(DemosaicBilinear()(m, "BGGR"), demosaic_bilinear(m, "BGGR"))


def test_bad_inputs_raise():
    with pytest.raises(ShapeError, match="unknown Bayer pattern"):
        mosaic(torch.rand(1, 3, 4, 4), "RGBG")
    with pytest.raises(ShapeError, match="even"):
        pack(torch.rand(1, 1, 5, 4), "RGGB")
    with pytest.raises(ShapeError, match="channel"):
        pack(torch.rand(1, 3, 4, 4), "RGGB")
    with pytest.raises(ShapeError, match="batch"):
        mosaic(torch.rand(2, 3, 4, 4), ["RGGB"] * 3)
    with pytest.raises(ShapeError, match="outside"):
        crop(torch.rand(1, 1, 4, 4), "RGGB", 2, 2, 4, 4)
    with pytest.raises(ShapeError):
        demosaic_bilinear(torch.rand(1, 1, 4, 4).to(torch.int32), "RGGB")
