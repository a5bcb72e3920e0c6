"""Fused PTP: the Triton kernel (Triton's interpreter on the CPU, small sizes) against rawsynth.isp.process and
torch autograd, forward and backward, and the CPU path of process staying the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rawsynth.errors import ShapeError
from rawsynth.isp import ISPBatch, process, sample_isp_params, unprocess
from rawsynth.isp.ptp import _process_torch
from rawsynth.kernels import ptp, ptp_reference

from ..conftest import photo

pytest.importorskip("triton")


def _isp(b: int) -> ISPBatch:
    return ISPBatch.from_params([sample_isp_params(np.random.default_rng(200 + i)) for i in range(b)])


def _linear(b: int = 2, size: int = 16) -> torch.Tensor:
    """Linear camera RGB: real photos (unprocessed) in the top half, uniform noise over ``[-0.05, 1.1]`` in the
    bottom half, so that both clips (0 and 1) and ε are reached."""
    x = torch.cat([photo(n, 64)[..., 24:24 + size, 24:24 + size] for n in ("astronaut", "coffee", "chelsea")][:b])
    x = unprocess(x, _isp(b))
    g = torch.Generator().manual_seed(0)
    x[..., size // 2:, :] = torch.rand(x[..., size // 2:, :].shape, generator=g) * 1.15 - 0.05
    return x


def test_forward_matches_process():
    x, p = _linear(), _isp(2)
    ref = ptp_reference(x, p)
    out = ptp(x, p, backend="triton")
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert (ref < 2e-7).any() and (ref == 1).any() and ((ref > 1e-3) & (ref < 1)).float().mean() > 0.5
    # one ISPParams for the batch
    params = sample_isp_params(np.random.default_rng(1))
    torch.testing.assert_close(ptp(x, params, backend="triton"), ptp_reference(x, params), rtol=0, atol=1e-6)


def test_backward_matches_autograd():
    x, p = _linear(), _isp(2)
    go = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    xr = x.clone().requires_grad_()
    xk = x.clone().requires_grad_()
    (gr,) = torch.autograd.grad(ptp_reference(xr, p), xr, go)
    (gk,) = torch.autograd.grad(ptp(xk, p, backend="triton"), xk, go)
    assert (gr == 0).any() and (gr != 0).float().mean() > 0.5  # clipped pixels pass no gradient
    assert torch.equal(gk == 0, gr == 0)
    torch.testing.assert_close(gk, gr, rtol=1e-5, atol=1e-5)


def test_isp_parameter_gradients_come_from_the_reference():
    x, base = _linear(), _isp(2)

    def leaves():
        return ISPBatch(*(t.clone().requires_grad_(name != "rgb2cam") for name, t in
                          zip(("rgb2cam", "cam2rgb", "rgb_gain", "red_gain", "blue_gain"),
                              (base.rgb2cam, base.cam2rgb, base.rgb_gain, base.red_gain, base.blue_gain))))

    pr, pk = leaves(), leaves()
    xr, xk = x.clone().requires_grad_(), x.clone().requires_grad_()
    ptp_reference(xr, pr).square().sum().backward()
    ptp(xk, pk, backend="triton").square().sum().backward()
    for name in ("cam2rgb", "rgb_gain", "red_gain", "blue_gain"):
        torch.testing.assert_close(getattr(pk, name).grad, getattr(pr, name).grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xk.grad, xr.grad, rtol=1e-5, atol=1e-5)


def test_cpu_process_is_the_reference_and_errors():
    x, p = _linear(), _isp(2)
    assert torch.equal(process(x, p), _process_torch(x, p))
    assert torch.equal(ptp(x, p), process(x, p))  # auto on the CPU: torch
    with pytest.raises(ShapeError, match="float32"):
        ptp(x.double(), p, backend="triton")
    with pytest.raises(ShapeError, match="3 channel"):
        ptp(x[:, :2], p, backend="triton")
