"""Pair synthesis: shapes, determinism per (seed, key), the physics of each mode, crops and config."""

import json

import numpy as np
import pytest
import torch
import yaml

from rawsynth.errors import ConfigError, InputError, ShapeError
from rawsynth.isp import ISPParams, sample_isp_params, unprocess
from rawsynth.mns import Pattern, mosaic, normalize
from rawsynth.pipeline import (CropBox, Mode, SynthConfig, apply_crop, sample_crop, srgb_to_linear_lut,
                               synthesize)
from rawsynth.rng import numpy_rng

from .conftest import photo


def _hq(name="astronaut", size=128) -> np.ndarray:
    return (photo(name, size)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def cfg():
    return SynthConfig(crop=128, save_srgb=True)


def test_rddm_sample_shapes_and_metadata(cfg):
    s = synthesize(_hq(), "0000001_0", 7, cfg, source={"path": "a.png", "sha256": "x"})
    assert s.raw_dn.shape == (128, 128) and s.raw_dn.dtype == np.uint16
    assert s.hq_linear.shape == (128, 128, 3) and s.hq_linear.dtype == np.float32
    assert s.lq_srgb.shape == (128, 128, 3) and s.lq_srgb.dtype == np.uint8
    assert s.raw_dn.max() <= cfg.sensor.white_level
    meta = json.loads(json.dumps(s.meta))
    assert meta["mode"] == "rddm" and meta["pattern"] == s.pattern.value and meta["degradation"] is not None
    # the metadata reproduces the draws: the ISP parameters are those of the sample's own stream
    assert ISPParams.from_dict(meta["isp"]) == sample_isp_params(numpy_rng(7, "0000001_0", "isp"))


def test_same_seed_and_key_same_bytes_any_order(cfg):
    a = synthesize(_hq(), "k1", 3, cfg)
    synthesize(_hq("chelsea"), "k2", 3, cfg)  # another sample in between changes nothing
    b = synthesize(_hq(), "k1", 3, cfg)
    assert np.array_equal(a.raw_dn, b.raw_dn) and np.array_equal(a.hq_linear, b.hq_linear)
    assert a.meta == b.meta
    c = synthesize(_hq(), "k3", 3, cfg)
    assert not np.array_equal(a.raw_dn, c.raw_dn)


def test_lut_iptp_equals_unprocess():
    img = _hq("coffee")
    isp = sample_isp_params(np.random.default_rng(0))
    ref = unprocess(torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None], isp)
    assert (srgb_to_linear_lut(img, isp) - ref).abs().max() < 1e-6
    with pytest.raises(ShapeError):
        srgb_to_linear_lut(img.astype(np.float32), isp)


def _residual(s, clean_linear):
    raw = normalize(torch.from_numpy(s.raw_dn.astype(np.int32))[None, None], s.sensor, dtype=torch.float64)
    clean = mosaic(torch.from_numpy(clean_linear).permute(2, 0, 1)[None].double(), s.pattern)
    return raw - clean, clean


@pytest.mark.parametrize("mode", ["ddnet", "rddm"])
def test_raw_is_the_noisy_mosaic_of_the_right_image(mode):
    """ddnet: RAW = mosaic(HQ linear) + Eq. 11 noise; rddm: RAW = mosaic(IPTP(LQ)) + noise, LQ != HQ."""
    cfg = SynthConfig(mode=mode, crop=128, save_srgb=True)
    s = synthesize(_hq("chelsea"), "key", 11, cfg)
    if mode == "ddnet":
        target = s.hq_linear
        assert s.meta["degradation"] is None
    else:
        target = srgb_to_linear_lut(s.lq_srgb, s.isp)[0].permute(1, 2, 0).numpy()
        assert np.abs(s.lq_srgb.astype(int) - s.gt_srgb.astype(int)).mean() > 1
    resid, clean = _residual(s, target)
    inside = (clean > 0.02) & (clean < 0.9)  # away from clipping at black and white
    var = resid[inside].var().item()
    expected = (s.noise.lambda_shot * clean[inside] + s.noise.lambda_read).mean().item() + 1 / (12 * s.sensor.range**2)
    assert abs(resid[inside].mean().item()) < 4 * (expected / inside.sum().item()) ** 0.5 + 1e-4
    assert var == pytest.approx(expected, rel=0.1)


def test_patterns_are_drawn_uniformly_from_the_configured_set():
    cfg = SynthConfig(mode="ddnet", crop=16, patterns=("RGGB", "GBRG"))
    img = _hq(size=16)
    counts = {p: 0 for p in Pattern}
    for i in range(200):
        counts[synthesize(img, f"k{i}", 0, cfg).pattern] += 1
    assert counts[Pattern.BGGR] == counts[Pattern.GRBG] == 0
    assert 70 < counts[Pattern.RGGB] < 130


def test_iso_range_override():
    cfg = SynthConfig(mode="ddnet", crop=16, iso_range=(800, 800))
    s = synthesize(_hq(size=16), "k", 0, cfg)
    assert s.noise.iso == 800 and s.noise.lambda_shot == pytest.approx(8e-4)


def test_crops_are_even_inside_and_reproducible():
    rng = np.random.default_rng(0)
    for _ in range(100):
        box = sample_crop(rng, (301, 451), 128, "skip")
        assert box.top % 2 == 0 and box.left % 2 == 0
        assert box.top + 128 <= 301 and box.left + 128 <= 451
    with pytest.raises(InputError, match="too small") as e:
        sample_crop(rng, (100, 451), 128, "skip", name="small.png")
    assert e.value.reason == "too small" and "small.png" in str(e.value)
    box = sample_crop(rng, (100, 60), 128, "reflect")
    assert (box.pad_bottom, box.pad_right) == (28, 68) and (box.top, box.left) == (0, 0)
    img = np.arange(100 * 60 * 3, dtype=np.float32).reshape(100, 60, 3)
    out = apply_crop(img, box)
    assert out.shape == (128, 128, 3) and np.array_equal(out[:100, :60], img)
    assert np.array_equal(out[100, :60], img[98])  # reflection without repeating the edge row
    assert apply_crop(np.zeros((4, 4, 3)), CropBox(0, 0, 16, 16, "reflect", 12, 12)).shape == (16, 16, 3)


def test_config_round_trip_yaml_and_errors(tmp_path):
    cfg = SynthConfig(mode="ddnet", crop=256, patterns=("BGGR",), iso_range=(100, 800), save_dng=True)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert SynthConfig.from_dict(yaml.safe_load(path.read_text())) == cfg
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \[.crops.\]"):
        SynthConfig.from_dict({"crops": 3})
    with pytest.raises(ConfigError, match="multiple of the degradation scale"):
        SynthConfig(crop=130)
    with pytest.raises(ConfigError):
        SynthConfig(patterns=("RGBG",))
    with pytest.raises(ConfigError):
        SynthConfig(crop=0)
    with pytest.raises(InputError, match="no such noise profile"):
        SynthConfig(noise_profile="nope.json")
    assert SynthConfig(mode="ddnet").mode is Mode.DDNET


def test_bad_inputs(cfg):
    with pytest.raises(ShapeError):
        synthesize(np.zeros((128, 128), np.uint8), "k", 0, cfg)
    with pytest.raises(ShapeError):
        synthesize(np.zeros((127, 128, 3), np.uint8), "k", 0, cfg)
    with pytest.raises(ConfigError, match="key"):
        synthesize(_hq(), "a.b", 0, cfg)
