"""Tiled inference (rddm.restore.tiling / pipeline): tile layout, blending weights, exactness for networks of
limited receptive field, smooth seams for networks with global operations, Bayer-preserving padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rddm.errors import ConfigError
from rddm.restore.pipeline import Restorer, latent_multiple, reflect_pad
from rddm.restore.tiling import Tiling, ramp, tile_starts, tile_weights, tiled_apply

from .toy_restorer import ToyRDDM, toy_mosaic


@pytest.mark.parametrize("size,tile,overlap,align", [(10, 4, 1, 1), (64, 16, 4, 2), (100, 32, 8, 4), (33, 8, 3, 1),
                                                      (16, 16, 4, 1), (8, 16, 4, 2), (96, 24, 12, 8)])
def test_tile_starts_cover_with_overlap(size, tile, overlap, align):
    starts = tile_starts(size, tile, overlap, align)
    assert starts[0] == 0
    assert all(s % align == 0 for s in starts)
    if size <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == size
    gaps = np.diff(starts)
    assert (gaps > 0).all() and (tile - gaps >= overlap).all()  # every neighbour pair overlaps enough
    # the fewest tiles: one tile fewer could not cover the size with that overlap
    n = len(starts)
    assert (n - 1) * tile - (n - 2) * -(-overlap // align) * align < size or n == 2


def test_tile_starts_golden():
    assert tile_starts(10, 4, 1) == [0, 3, 6]
    assert tile_starts(64, 16, 4, 2) == [0, 12, 24, 36, 48]


def test_ramp_is_a_partition_of_unity_with_a_dead_margin():
    d = torch.linspace(0, 12, 241, dtype=torch.float64)
    for overlap, margin in [(12, 0), (12, 3), (5, 2)]:
        r = ramp(d, overlap, margin)
        torch.testing.assert_close(r + ramp(overlap - d, overlap, margin), torch.ones_like(d), rtol=0, atol=1e-12)
        assert (r[d <= margin] == 0).all() and (r[d >= overlap - margin] == 1).all()
        assert (torch.diff(r) >= 0).all()


def test_tile_weights_are_one_on_the_image_border():
    t = Tiling(8, 4, 1)
    w = tile_weights((0, 0), (8, 8), (20, 20), t, scale=2)
    assert w.shape == (16, 16)
    assert (w[:8, :8] == 1).all()  # top-left corner of the image: no interior edge near
    assert (w[-2:, :] == 0).all() and (w[:, -2:] == 0).all()  # dead margin (1 grid unit = 2 px) at interior edges


def test_tiling_rejects_bad_sizes():
    for kw in ({"tile": 8, "overlap": 8}, {"tile": 8, "overlap": 2, "margin": 1}, {"tile": 6, "overlap": 2, "align": 4},
               {"tile": 8, "overlap": 0}):
        with pytest.raises(ConfigError):
            Tiling(**kw)


@pytest.mark.parametrize("tiling,tile_batch", [(Tiling(8, 4, 1), 1), (Tiling(12, 5, 2, 1), 3),
                                               (Tiling(16, 6, 2, 4), 2)])
def test_pointwise_fn_is_reproduced_exactly(tiling, tile_batch):
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = tiled_apply(lambda t: t * 2.0 + 1.0, x, tiling, tile_batch=tile_batch, out_dtype=torch.float64)
    torch.testing.assert_close(out, x * 2.0 + 1.0, rtol=0, atol=1e-12)


def test_scales_map_grid_units():
    """Encoder-like (in_scale 2: 2x2 average) and decoder-like (out_scale 2: nearest upsampling) maps."""
    x = torch.rand(1, 1, 48, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = Tiling(8, 4, 1, 2)
    down = tiled_apply(lambda v: F.avg_pool2d(v, 2), x, t, in_scale=2, out_dtype=torch.float64)
    torch.testing.assert_close(down, F.avg_pool2d(x, 2), rtol=0, atol=1e-12)
    up = tiled_apply(lambda v: F.interpolate(v, scale_factor=2), down, t, out_scale=2, out_dtype=torch.float64)
    torch.testing.assert_close(up, F.interpolate(down, scale_factor=2), rtol=0, atol=1e-12)


def test_local_conv_is_exact_iff_margin_covers_its_receptive_field():
    g = torch.Generator().manual_seed(2)
    conv = torch.nn.Conv2d(2, 2, 5, padding=2).double()  # receptive radius 2
    torch.nn.init.normal_(conv.weight, generator=g)
    x = torch.rand(1, 2, 50, 38, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = conv(x)
        good = tiled_apply(conv, x, Tiling(16, 6, 2), out_dtype=torch.float64)
        bad = tiled_apply(conv, x, Tiling(16, 6, 0), out_dtype=torch.float64)
    torch.testing.assert_close(good, ref, rtol=0, atol=1e-10)
    assert (bad - ref).abs().max() > 1e-3  # negative control: zero padding at tile borders leaks in


def test_global_operation_blends_without_a_step():
    """fn adds the tile's mean (a stand-in for GroupNorm/attention statistics): tiles differ by a constant each.
    With feathering the error (tiled − untiled) changes by at most π/(2·W)·(spread of the constants) between
    neighbouring pixels (W = ramp width), instead of jumping by the full difference at a hard tile border."""
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    x = (yy + xx * xx)[None, None].double() + 0.01 * torch.randn(1, 1, 64, 96, generator=g, dtype=torch.float64)
    t = Tiling(24, 12, 2)

    def fn(v):
        return v + v.mean(dim=(1, 2, 3), keepdim=True)

    ref = x + x.mean()
    err = tiled_apply(fn, x, t, tile_batch=4, out_dtype=torch.float64) - ref
    means = [x[..., a:a + 24, b:b + 24].mean() for a in tile_starts(64, 24, 12) for b in tile_starts(96, 24, 12)]
    spread = float(max(means) - min(means))
    bound = math.pi / (2 * (t.overlap - 2 * t.margin)) * spread
    step = max(err.diff(dim=-1).abs().max().item(), err.diff(dim=-2).abs().max().item())
    assert spread > 0.1 and step <= bound * 1.001 + 1e-12
    assert step < 0.25 * spread  # a hard tiling would step by up to the full spread


# ------------------------------------------------------------------------------------------- pipeline


def test_reflect_pad_keeps_the_bayer_layout_and_matches_numpy():
    from rawsynth.mns import mosaic

    rgb = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for pattern in ("RGGB", "GBRG"):
        raw = mosaic(rgb, pattern)
        for multiple in (4, 16, 32):  # 32: pads larger than the image, done in several steps
            padded = reflect_pad(raw, multiple)
            h, w = padded.shape[-2:]
            assert h % multiple == 0 and w % multiple == 0 and h >= 6 and w >= 10
            rgb_np = np.pad(rgb.numpy(), ((0, 0), (0, 0), (0, h - 6), (0, w - 10)), mode="reflect")
            torch.testing.assert_close(padded, mosaic(torch.from_numpy(rgb_np), pattern), rtol=0, atol=0)


@pytest.mark.parametrize("hw,tile,overlap,tile_batch", [((46, 62), 16, 8, 1), ((64, 40), 24, 8, 4),
                                                        ((30, 90), 12, 6, 2)])
def test_tiled_restore_equals_untiled_for_a_local_model(hw, tile, overlap, tile_batch):
    model = ToyRDDM().eval()
    raw = toy_mosaic(*hw, pattern="GRBG")
    emb = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(0))
    whole = Restorer(model, tile=None)(raw, "GRBG", emb)
    model.calls.clear()
    r = Restorer(model, tile=tile, overlap=overlap, margin=1, tile_batch=tile_batch)
    tiled = r(raw, "GRBG", emb)
    assert whole.shape == tiled.shape == (1, 3, *hw)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=2e-6)
    assert len(model.calls) > 3  # really tiled
    assert {p for _, pats in model.calls for p in pats} == {"GRBG"}  # every tile keeps the image's pattern
    assert r.tiling.align == latent_multiple(model) == 2


def test_tiling_changes_nothing_when_the_tile_covers_the_image():
    model = ToyRDDM().eval()
    raw = toy_mosaic(32, 32)
    emb = torch.zeros(1, 3, 4)
    torch.testing.assert_close(Restorer(model, tile=64)(raw, "RGGB", emb), Restorer(model, tile=0)(raw, "RGGB", emb),
                               rtol=0, atol=0)


def test_restorer_rejects_tiles_that_do_not_fit():
    with pytest.raises(ConfigError, match="--tile"):
        Restorer(ToyRDDM(), tile=2, overlap=1)
    with pytest.raises(ConfigError, match="--overlap"):
        Restorer(ToyRDDM(), tile=16, overlap=16)
