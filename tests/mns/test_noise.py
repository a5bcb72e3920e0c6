"""Noise: the Eq. 11 variance law measured on flat patches, the estimator, profiles, determinism."""

import json
import math

import numpy as np
import pytest
import torch

from rawsynth.errors import ConfigError, InputError, ShapeError
from rawsynth.isp import fixed_isp_params, unprocess
from rawsynth.mns import (NoiseModel, NoiseParams, NoiseProfile, add_noise, estimate_noise_level,
                          list_noise_profiles, load_noise_profile, mosaic, noise_params_at_iso, pack,
                          sample_noise_params)

from ..conftest import photo

LEVELS = torch.tensor([0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9])


def _flat_patches(params, n=64, generator_seed=0):
    """(L, 1, n, n) flat patches at LEVELS with noise added."""
    x = LEVELS.view(-1, 1, 1, 1).expand(-1, 1, n, n).contiguous()
    return add_noise(x, params, torch.Generator().manual_seed(generator_seed))


@pytest.mark.parametrize("iso", [100, 800, 3200, 12000])
def test_measured_variance_follows_the_law(iso):
    p = noise_params_at_iso(iso)
    y = _flat_patches(p, n=256)
    var = y.double().var(dim=(1, 2, 3), unbiased=True)
    expected = p.lambda_shot * LEVELS.double() + p.lambda_read
    # sample variance of 65536 Gaussian draws has relative std sqrt(2/65535) = 0.55%; allow 5 sigma
    np.testing.assert_allclose(var.numpy(), expected.numpy(), rtol=0.03)
    assert torch.allclose(y.double().mean(dim=(1, 2, 3)), LEVELS.double(), atol=5 * expected.sqrt().max().item() / 256)


@pytest.mark.parametrize("iso", [200, 1600, 6400])
def test_estimator_recovers_the_parameters(iso):
    p = noise_params_at_iso(iso)
    y = _flat_patches(p, n=128, generator_seed=iso)
    est = estimate_noise_level(y[:, 0])
    assert est.lambda_shot == pytest.approx(p.lambda_shot, rel=0.05)
    # read noise is tiny next to shot noise at high ISO; judge it by the variance it explains at a dark level
    assert est.lambda_read == pytest.approx(p.lambda_read, abs=0.05 * (p.lambda_shot * 0.02 + p.lambda_read))


def test_estimator_on_packed_planes_of_a_flat_field_mosaic():
    """A grey card shot: each packed plane is one CFA colour, flat within its plane."""
    gains = torch.tensor([0.45, 0.8, 0.8, 0.6])  # per-plane levels of a grey card in camera RGB
    levels = torch.linspace(0.05, 1.0, 6)
    planes = (levels.view(-1, 1, 1, 1) * gains.view(1, 4, 1, 1)).expand(-1, 4, 64, 64).contiguous()
    p = NoiseParams(iso=1000, lambda_shot=1e-3, lambda_read=2e-5)
    y = add_noise(planes, p, torch.Generator().manual_seed(3))
    est = estimate_noise_level(y.reshape(-1, 64, 64))
    assert est.lambda_shot == pytest.approx(1e-3, rel=0.05)
    assert est.lambda_read == pytest.approx(2e-5, abs=1e-5)
    assert len(est.means) == 24


def test_estimator_accepts_patches_of_different_sizes_and_constrains_signs():
    g = np.random.default_rng(0)
    patches = [0.1 + np.sqrt(1e-4) * g.standard_normal(500), 0.6 + np.sqrt(1e-4) * g.standard_normal((30, 30))]
    est = estimate_noise_level(patches)  # pure read noise: the shot term must not go negative
    assert est.lambda_shot >= 0 and est.lambda_read == pytest.approx(1e-4, rel=0.15)
    with pytest.raises(ShapeError):
        estimate_noise_level([np.ones(10)])
    with pytest.raises(ShapeError, match="same mean"):
        estimate_noise_level(np.full((3, 10), 0.5))


def test_same_generator_seed_same_bytes_and_no_global_rng():
    x = pack(mosaic(unprocess(photo("astronaut", 64), fixed_isp_params()), "RGGB"), "RGGB")
    p = noise_params_at_iso(1600)
    torch.manual_seed(0)
    a = add_noise(x, p, torch.Generator().manual_seed(42))
    torch.manual_seed(1)  # the global RNG plays no part
    b = add_noise(x, p, torch.Generator().manual_seed(42))
    assert torch.equal(a, b)
    assert not torch.equal(a, add_noise(x, p, torch.Generator().manual_seed(43)))
    with pytest.raises(TypeError, match="Generator"):
        add_noise(x, p, None)


def test_per_sample_params_and_tensor_params():
    x = torch.full((3, 1, 64, 64), 0.5)
    ps = [noise_params_at_iso(i) for i in (100, 1600, 12000)]
    y = add_noise(x, ps, torch.Generator().manual_seed(0))
    v = y.var(dim=(1, 2, 3))
    assert v[0] < v[1] < v[2]
    shot = torch.tensor([p.lambda_shot for p in ps])
    read = torch.tensor([p.lambda_read for p in ps])
    assert torch.equal(add_noise(x, (shot, read), torch.Generator().manual_seed(0)), y)


def test_noise_is_differentiable_wrt_signal_and_levels():
    x = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64, requires_grad=True)
    shot = torch.tensor([1e-3], dtype=torch.float64, requires_grad=True)
    read = torch.tensor([1e-5], dtype=torch.float64, requires_grad=True)
    add_noise(x, (shot, read), torch.Generator().manual_seed(0)).sum().backward()
    assert torch.isfinite(x.grad).all() and shot.grad is not None and read.grad is not None


def test_default_profile_ties_shot_to_iso_and_read_to_shot():
    prof = load_noise_profile()
    assert prof.kind is NoiseModel.LOGLINEAR
    p100, p12000 = noise_params_at_iso(100, prof), noise_params_at_iso(12000, prof)
    assert p100.lambda_shot == pytest.approx(1e-4) and p12000.lambda_shot == pytest.approx(0.012)
    assert math.log(p100.lambda_read) == pytest.approx(2.18 * math.log(1e-4) + 1.20)


def test_sampled_noise_follows_brooks_distribution():
    rng = np.random.default_rng(0)
    ps = [sample_noise_params(rng) for _ in range(5000)]
    log_shot = np.log([p.lambda_shot for p in ps])
    resid = np.log([p.lambda_read for p in ps]) - (2.18 * log_shot + 1.20)
    assert log_shot.min() >= math.log(1e-4) - 1e-9 and log_shot.max() <= math.log(0.012) + 1e-9
    # log-uniform: the mean of log shot sits mid-range, its std is range/sqrt(12)
    span = math.log(0.012) - math.log(1e-4)
    assert log_shot.mean() == pytest.approx(math.log(1e-4) + span / 2, abs=0.05)
    assert log_shot.std() == pytest.approx(span / math.sqrt(12), rel=0.03)
    assert abs(resid.mean()) < 0.02 and resid.std() == pytest.approx(0.26, rel=0.05)
    iso = np.array([p.iso for p in ps])
    np.testing.assert_allclose([p.lambda_shot for p in ps], 1e-6 * iso)


def test_sampling_is_deterministic_and_iso_can_be_fixed():
    a = sample_noise_params(np.random.default_rng(5))
    assert a == sample_noise_params(np.random.default_rng(5))
    b = sample_noise_params(np.random.default_rng(5), iso=800)
    assert b.iso == 800 and b.lambda_shot == pytest.approx(8e-4)
    assert NoiseParams.from_json(a.to_json()) == a


def test_table_profile_from_json(tmp_path):
    d = {"name": "cam", "kind": "table", "points": [[100, 2e-4, 1e-6], [400, 8e-4, 4e-6], [1600, 3.2e-3, 3e-5]],
         "iso_range": [100, 1600], "read_log_sigma": 0.0}
    path = tmp_path / "cam.json"
    path.write_text(json.dumps(d))
    prof = load_noise_profile(path)
    assert prof.mean_params(400) == pytest.approx((8e-4, 4e-6))
    shot, read = prof.mean_params(200)  # log-log interpolation
    assert shot == pytest.approx(4e-4) and read == pytest.approx(2e-6)
    assert prof.mean_params(3200)[0] == pytest.approx(6.4e-3)  # extrapolated along the last segment
    p = sample_noise_params(np.random.default_rng(0), prof)
    assert 100 <= p.iso <= 1600 and (p.lambda_shot, p.lambda_read) == pytest.approx(prof.mean_params(p.iso))
    assert NoiseProfile.from_dict(prof.to_dict()) == prof


def test_bundled_profiles_listed():
    assert "default" in list_noise_profiles()


@pytest.mark.parametrize("content,match", [
    ("{not json", "invalid JSON"),
    (json.dumps({"name": "x", "kind": "magic"}), "kind"),
    (json.dumps({"name": "x", "shot": 1}), "unknown key"),
    (json.dumps({"name": "x", "kind": "table", "points": [[400, 1e-3, 1e-5], [100, 1e-4, 1e-6]]}), "increasing"),
    (json.dumps({"kind": "loglinear"}), "name"),
])
def test_bad_profiles_raise_typed_errors_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as e:
        load_noise_profile(path)
    assert str(path) in str(e.value)


def test_missing_profile_and_bad_params():
    with pytest.raises(InputError, match="no such noise profile"):
        load_noise_profile("/nonexistent/profile.json")
    with pytest.raises(ConfigError):
        NoiseParams(iso=100, lambda_shot=-1, lambda_read=0)
    with pytest.raises(ShapeError):
        add_noise(torch.zeros(1, 1, 4, 4), [noise_params_at_iso(100)] * 2, torch.Generator())
