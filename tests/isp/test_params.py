import json

import numpy as np
import pytest
import torch

from rawsynth.errors import ConfigError, ShapeError
from rawsynth.isp import (RGB2XYZ, XYZ2CAMS, ISPBatch, ISPConfig, ISPParams, fixed_isp_params,
                          sample_isp_params)


def test_json_round_trip_is_exact():
    for k in range(20):
        p = sample_isp_params(np.random.default_rng(k))
        q = ISPParams.from_json(p.to_json())
        assert q == p
        assert json.loads(p.to_json()) == p.to_dict()


def test_same_seed_same_params_and_draw_order():
    a = sample_isp_params(np.random.default_rng(7))
    b = sample_isp_params(np.random.default_rng(7))
    assert a == b
    assert a != sample_isp_params(np.random.default_rng(8))
    # documented draw order: weights, 1/rgb_gain, red, blue
    rng = np.random.default_rng(7)
    w = rng.uniform(1e-8, 1e8, size=4)
    inv = rng.normal(0.8, 0.1)
    assert a.rgb_gain == pytest.approx(1 / inv)
    assert a.red_gain == pytest.approx(rng.uniform(1.9, 2.4))
    assert a.blue_gain == pytest.approx(rng.uniform(1.5, 1.9))
    xyz2cam = np.tensordot(w / w.sum(), np.asarray(XYZ2CAMS), axes=1)
    m = xyz2cam @ np.asarray(RGB2XYZ)
    np.testing.assert_allclose(a.rgb2cam, m / m.sum(1, keepdims=True), rtol=1e-12)


def test_matrices_are_inverse_and_rows_sum_to_one():
    p = sample_isp_params(np.random.default_rng(0))
    np.testing.assert_allclose(np.asarray(p.rgb2cam) @ np.asarray(p.cam2rgb), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(np.asarray(p.rgb2cam).sum(1), 1.0, atol=1e-12)


def test_sampled_distributions_follow_config():
    rng = np.random.default_rng(123)
    ps = [sample_isp_params(rng) for _ in range(4000)]
    red = np.array([p.red_gain for p in ps])
    blue = np.array([p.blue_gain for p in ps])
    inv = 1 / np.array([p.rgb_gain for p in ps])
    assert 1.9 <= red.min() and red.max() <= 2.4 and abs(red.mean() - 2.15) < 0.01
    assert 1.5 <= blue.min() and blue.max() <= 1.9 and abs(blue.mean() - 1.7) < 0.01
    assert abs(inv.mean() - 0.8) < 0.01 and abs(inv.std() - 0.1) < 0.01


def test_custom_config_ranges_and_yaml_style_dict():
    cfg = ISPConfig.from_dict({"red_gain_range": [2.0, 2.0], "blue_gain_range": [1.6, 1.6],
                               "rgb_gain_inv_std": 0.0})
    p = sample_isp_params(np.random.default_rng(1), cfg)
    assert (p.red_gain, p.blue_gain) == (2.0, 1.6) and p.rgb_gain == pytest.approx(1.25)
    with pytest.raises(ConfigError, match="unknown key"):
        ISPConfig.from_dict({"red_gain": 2})
    with pytest.raises(ConfigError):
        ISPConfig(red_gain_range=(2.4, 1.9))


def test_fixed_params_are_the_distribution_centres():
    p = fixed_isp_params()
    assert (p.rgb_gain, p.red_gain, p.blue_gain) == (1.25, 2.15, 1.7)
    assert p.wb_gains == pytest.approx((1.25 * 2.15, 1.25, 1.25 * 1.7))


@pytest.mark.parametrize("bad", [
    dict(rgb_gain=0.0), dict(red_gain=-1.0), dict(blue_gain=float("nan")), dict(rgb_gain="1"),
])
def test_invalid_params_raise(bad):
    p = fixed_isp_params().to_dict()
    p.update(bad)
    with pytest.raises(ConfigError):
        ISPParams.from_dict(p)


def test_inconsistent_matrices_and_bad_keys_raise():
    d = fixed_isp_params().to_dict()
    d["cam2rgb"] = np.eye(3).tolist()
    with pytest.raises(ConfigError, match="inverse"):
        ISPParams.from_dict(d)
    with pytest.raises(ConfigError, match="3x3"):
        ISPParams.from_rgb2cam(np.eye(2), 1, 1, 1)
    with pytest.raises(ConfigError, match="missing"):
        ISPParams.from_dict({"rgb_gain": 1.0})
    with pytest.raises(TypeError):
        sample_isp_params(np.random.RandomState(0))


def test_isp_batch_stacks_per_sample():
    ps = [sample_isp_params(np.random.default_rng(k)) for k in range(3)]
    b = ISPBatch.from_params(ps, dtype=torch.float64)
    assert b.rgb2cam.shape == (3, 3, 3) and b.red_gain.shape == (3,)
    assert b.red_gain[2].item() == ps[2].red_gain
    np.testing.assert_allclose(b.wb_gains()[1].numpy(), ps[1].wb_gains)
    with pytest.raises(ShapeError):
        ISPBatch.from_params(ps, batch_size=2)
