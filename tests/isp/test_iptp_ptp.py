"""IPTP/PTP: round trip on real photos, the equations stage by stage, gradients, batching, devices."""

import numpy as np
import pytest
import torch

from rawsynth.errors import ShapeError
from rawsynth.isp import (ISPBatch, Process, Unprocess, apply_matrix, fixed_isp_params, gamma, inverse_gamma,
                          inverse_tone, inverse_white_balance, invertible_mask, process, sample_isp_params, tone,
                          unprocess)

from ..conftest import photo

# Measured: max |process(unprocess(x)) - x| over invertible pixels is 3e-7 in float32 (astronaut, chelsea,
# coffee, rocket; 10 random parameter sets); in float64 only Eq. 10's epsilon floor (1.6e-7) remains.
ROUND_TRIP_TOL_F32 = 2e-6


@pytest.mark.parametrize("seed", range(10))
def test_round_trip_on_real_photos(photos, seed):
    p = sample_isp_params(np.random.default_rng(seed))
    lin = unprocess(photos, p)
    back = process(lin, p)
    mask = invertible_mask(photos, p).expand_as(photos)
    assert mask.float().mean() > 0.75  # most of a real photo is invertible
    assert (back - photos).abs()[mask].max() < ROUND_TRIP_TOL_F32
    assert lin.min() >= 0 and lin.max() <= 1


def test_round_trip_float64_is_exact_up_to_the_eps_floor():
    x = photo("coffee").double()
    p = fixed_isp_params()
    mask = invertible_mask(x, p).expand_as(x)
    err = (process(unprocess(x, p), p) - x).abs()
    # The only error left is Eq. 10's epsilon: a 0 channel comes back as tone(gamma(1e-8)) = 1.6e-7.
    eps_floor = tone(gamma(torch.tensor(0.0, dtype=torch.float64))).item()
    assert 1.5e-7 < eps_floor < 1.7e-7
    assert err[mask].max() <= eps_floor + 1e-12
    assert err[mask & (x > 0.01)].max() < 1e-12


def test_mask_excludes_highlights_and_keeps_midtones():
    p = fixed_isp_params()
    x = torch.tensor([1.0, 0.999, 0.5, 0.2]).repeat(3, 1).reshape(1, 3, 1, 4)
    assert invertible_mask(x, p).flatten().tolist() == [False, False, True, True]
    # a saturated colour whose inverse CCM leaves [0, 1] is excluded too
    x = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    hot = sample_isp_params(np.random.default_rng(0))
    cam = apply_matrix(inverse_gamma(inverse_tone(x)), ISPBatch.from_params(hot).rgb2cam)
    assert bool((cam < 0).any() | (cam > 1).any()) == (not invertible_mask(x, hot).item())


def test_unprocess_matches_brooks_formulas_stage_by_stage():
    x = photo("astronaut", 64).double()
    p = sample_isp_params(np.random.default_rng(3))
    a = x.permute(0, 2, 3, 1).numpy()[0]  # (H, W, 3), Brooks' layout
    a = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * np.clip(a, 0, 1)) / 3.0)
    a = np.maximum(a, 1e-8) ** 2.2
    a = a @ np.asarray(p.rgb2cam).T
    gains = np.array([1.0 / p.red_gain, 1.0, 1.0 / p.blue_gain]) / p.rgb_gain
    gray = a.mean(-1, keepdims=True)
    mask = (np.maximum(gray - 0.9, 0) / 0.1) ** 2
    a = np.clip(a * np.maximum(mask + (1 - mask) * gains, gains), 0, 1)
    np.testing.assert_allclose(unprocess(x, p)[0].permute(1, 2, 0).numpy(), a, atol=1e-12)


def test_stages_are_mutual_inverses():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    np.testing.assert_allclose(tone(inverse_tone(t)).numpy(), t.numpy(), atol=1e-12)
    np.testing.assert_allclose(gamma(inverse_gamma(t[1:])).numpy(), t[1:].numpy(), atol=1e-12)
    p = ISPBatch.from_params(fixed_isp_params(), 1, dtype=torch.float64)
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(apply_matrix(apply_matrix(x, p.rgb2cam), p.cam2rgb).numpy(), x.numpy(), atol=1e-12)


def test_per_sample_params_equal_one_at_a_time(photos):
    ps = [sample_isp_params(np.random.default_rng(k)) for k in range(len(photos))]
    batched = unprocess(photos, ps)
    single = torch.cat([unprocess(photos[i:i + 1], ps[i]) for i in range(len(ps))])
    assert torch.equal(batched, single)
    assert torch.equal(process(batched, ISPBatch.from_params(ps)), torch.cat(
        [process(batched[i:i + 1], ps[i]) for i in range(len(ps))]))


def test_module_equals_function(photos):
    p = fixed_isp_params()
    assert torch.equal(Unprocess()(photos, p), unprocess(photos, p))
    lin = unprocess(photos, p)
    assert torch.equal(Process()(lin, p), process(lin, p))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    p = fixed_isp_params()
    x = (0.25 + 0.5 * torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: unprocess(t, p), (x,))
    lin = (0.05 + 0.3 * torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: process(t, p), (lin,))


def test_highlight_path_matches_the_dense_formula_and_has_gradients():
    """The sparse evaluation above the inflection equals Brooks' dense formula bit for bit, in either layout."""
    g = torch.Generator().manual_seed(2)
    x = 0.8 + 0.2 * torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=g)  # many pixels above 0.9 grey
    p = ISPBatch.from_params([fixed_isp_params(), sample_isp_params(np.random.default_rng(1))], dtype=torch.float64)
    gains = torch.stack([1 / p.red_gain, torch.ones(2, dtype=torch.float64), 1 / p.blue_gain], 1) / p.rgb_gain[:, None]
    gains = gains[:, :, None, None]
    gray = x.mean(1, keepdim=True)
    mask = ((gray - 0.9).clamp_min(0) / (1.0 - 0.9)) ** 2  # the previous, dense implementation
    dense = x * torch.maximum(mask + (1 - mask) * gains, gains)
    assert (gray > 0.9).float().mean() > 0.2
    assert torch.equal(inverse_white_balance(x, p), dense)
    cl = inverse_white_balance(x, p, memory_format=torch.channels_last)
    assert torch.equal(cl, dense) and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda t: inverse_white_balance(t, p), (x[:1, :, :4, :4].clone().requires_grad_(),))


def test_gradcheck_wrt_parameters():
    g = torch.Generator().manual_seed(1)
    lin = 0.05 + 0.3 * torch.rand(1, 3, 4, 4, dtype=torch.float64, generator=g)
    b = ISPBatch.from_params(fixed_isp_params(), 1, dtype=torch.float64)
    red = b.red_gain.clone().requires_grad_()
    ccm = b.cam2rgb.clone().requires_grad_()

    def f(r, m):
        return process(lin, ISPBatch(b.rgb2cam, m, b.rgb_gain, r, b.blue_gain))

    assert torch.autograd.gradcheck(f, (red, ccm))


def test_gradients_finite_at_black_and_white():
    x = torch.tensor([0.0, 1e-9, 0.5, 1.0 - 1e-9, 1.0]).repeat(3, 1).reshape(1, 3, 1, 5).requires_grad_()
    unprocess(x, fixed_isp_params()).sum().backward()
    assert torch.isfinite(x.grad).all()
    lin = torch.tensor([0.0, 1e-12, 0.5, 1.0]).repeat(3, 1).reshape(1, 3, 1, 4).requires_grad_()
    process(lin, fixed_isp_params()).sum().backward()
    assert torch.isfinite(lin.grad).all()


def test_highlights_stay_neutral():
    """The highlight-safe inverse WB keeps white white through the round trip (no magenta highlights)."""
    p = sample_isp_params(np.random.default_rng(5))
    white = torch.ones(1, 3, 2, 2)
    out = process(unprocess(white, p), p)
    assert (out - 1).abs().max() < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_preserved(dtype):
    x = photo("rocket", 32).to(dtype)
    p = fixed_isp_params()
    assert unprocess(x, p).dtype == dtype and process(unprocess(x, p), p).dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(photos):
    p = [sample_isp_params(np.random.default_rng(k)) for k in range(len(photos))]
    torch.testing.assert_close(unprocess(photos.cuda(), p).cpu(), unprocess(photos, p), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad", [torch.rand(3, 8, 8), torch.rand(1, 4, 8, 8), torch.randint(0, 255, (1, 3, 8, 8)),
                                 np.zeros((1, 3, 8, 8))])
def test_bad_inputs_raise(bad):
    with pytest.raises(ShapeError):
        unprocess(bad, fixed_isp_params())
    with pytest.raises(ShapeError):
        process(bad, fixed_isp_params())


def test_wrong_param_count_raises(photos):
    with pytest.raises(ShapeError, match="batch"):
        unprocess(photos, [fixed_isp_params()] * 3)
    with pytest.raises(ShapeError):
        unprocess(photos, {"rgb_gain": 1})
