"""``rddm restore`` on camera-style DNGs (independent writer, ``tests/io/indep_dng.py``): the output keeps the
camera's orientation and colour (checked against LibRaw's own development of the same file), and clipped
highlights follow the documented policy (:mod:`rddm.restore.highlights`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rawpy
import torch

from rawsynth.io import read_srgb
from rawsynth.isp.params import RGB2XYZ
from rawsynth.isp.ptp import gamma, tone
from rawsynth.mns.cfa import demosaic_bilinear
from rddm.restore.highlights import apply_highlight_policy, block_mask
from rddm.restore.run import RestoreOptions, restore_files

from ..io.indep_dng import write_camera_dng

H, W, WHITE = 48, 64, 4000
CM = np.array([[0.9, -0.3, -0.1], [-0.4, 1.3, 0.1], [-0.1, 0.2, 0.6]])
BLACK4 = (510, 512, 514, 516)


def _neutral() -> np.ndarray:
    n = CM @ np.sum(RGB2XYZ, axis=1)
    return n / n.max()


def _scene(seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric RGGB mosaic (DN) of a grey-ish scene under D65, black 510..516."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    v = 0.1 + 0.5 * (0.5 + 0.5 * np.sin(5 * yy + 2 * xx ** 2)) + 0.3 * (xx > 0.6) * (yy < 0.3)
    n = _neutral()
    gain = np.tile(np.array([[n[0], n[1]], [n[1], n[2]]]), (H // 2, W // 2))
    black = np.tile(np.reshape(BLACK4, (2, 2)), (H // 2, W // 2))
    dn = black + v * gain * (WHITE - black) + rng.normal(0, 2, (H, W))
    return np.clip(np.round(dn), 0, WHITE).astype(np.uint16)


class Demosaic:
    """A stand-in restorer: bilinear demosaic of the normalised mosaic (what the file says, nothing learnt)."""

    def __call__(self, item):
        return demosaic_bilinear(torch.from_numpy(item.raw)[None, None].double(), item.pattern).float()


def _libraw_srgb(path) -> np.ndarray:
    """LibRaw's development (camera white balance, linear sRGB, no auto-brightness, its own flip, clip
    highlights) finished with our gamma and tone, in [0, 1]."""
    with rawpy.imread(str(path)) as raw:
        out = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(1, 1), output_bps=16,
                              output_color=rawpy.ColorSpace.sRGB, demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR,
                              highlight_mode=rawpy.HighlightMode.Clip, adjust_maximum_thr=0.0)
    lin = torch.from_numpy(out.astype(np.float32) / 65535.0).permute(2, 0, 1)
    return tone(gamma(lin.clamp(0, 1))).permute(1, 2, 0).numpy()


def _psnr(a, b, border=3) -> float:
    a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("orientation", [1, 6, 3, 8])
def test_restore_keeps_orientation_and_colour(tmp_path, orientation):
    """Measured: 66.6 dB against LibRaw in each orientation (per-channel black 510..516, D65 shot); the same
    output turned 180° scores 9.9 dB."""
    path = tmp_path / "cam.dng"
    write_camera_dng(path, _scene(), "RGGB", black=BLACK4, black_dim=(2, 2), white=WHITE, orientation=orientation,
                     color_matrix=CM, neutral=_neutral())
    out = tmp_path / "out"
    report = restore_files([path], out, Demosaic, RestoreOptions(bits=16), log=lambda m: None)
    assert report.ok and report.written == ["cam"]
    ours = read_srgb(out / "cam.png").image
    ref = _libraw_srgb(path)
    assert ours.shape == ref.shape == ((W, H, 3) if orientation >= 5 else (H, W, 3))
    assert _psnr(ours, ref) > 55.0, _psnr(ours, ref)
    if orientation != 1:
        assert _psnr(np.rot90(ours, 2), ref) < 20.0


def test_clipped_highlights_render_white(tmp_path):
    dn = _scene(1)
    dn[10:20, 20:30] = WHITE  # every channel clipped
    dn[30:40:2, 40:50:2] = WHITE  # only the red samples clipped (RGGB: even rows, even columns)
    path = tmp_path / "hi.dng"
    write_camera_dng(path, dn, "RGGB", black=BLACK4, black_dim=(2, 2), white=WHITE, color_matrix=CM,
                     neutral=_neutral())
    for policy in ("white", "keep"):
        restore_files([path], tmp_path / policy, Demosaic, RestoreOptions(highlights=policy), log=lambda m: None)
    white = read_srgb(tmp_path / "white" / "hi.png").image
    keep = read_srgb(tmp_path / "keep" / "hi.png").image
    assert np.all(white[10:20, 20:30] == 1.0) and np.all(white[30:40, 40:50] == 1.0)
    assert np.all(keep[12:18, 22:28] == 1.0)  # fully clipped (inside): white either way
    assert np.abs(keep[31:39, 41:49] - 1.0).max() > 0.1  # partly clipped: a cast unless the policy fixes it
    assert np.array_equal(white[:8], keep[:8])  # nothing changes away from clipping
    assert np.all(_libraw_srgb(path)[12:18, 22:28] > 0.99)  # LibRaw renders the clipped patch white too


def test_block_mask_and_policy_arguments():
    sat = np.zeros((4, 6), bool)
    sat[1, 2] = True
    m = block_mask(sat)
    assert m.sum() == 4 and m[0:2, 2:4].all()
    x = torch.zeros(1, 3, 4, 6)
    from rawsynth.isp import fixed_isp_params

    isp = fixed_isp_params()
    y = apply_highlight_policy(x, sat, isp, "white")
    np.testing.assert_allclose(y[0, :, 0, 2].numpy(), [1 / g for g in isp.wb_gains], rtol=1e-6)
    assert apply_highlight_policy(x, sat, isp, "keep") is x and apply_highlight_policy(x, None, isp) is x
    with pytest.raises(ValueError, match="highlight policy"):
        apply_highlight_policy(x, sat, isp, "reconstruct")
    with pytest.raises(ValueError, match="--highlights"):
        RestoreOptions(highlights="bogus")
