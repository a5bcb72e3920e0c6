"""The compiled kernels on a CUDA device at full size (512²) against the torch reference on the same device:
tight tolerances for the deterministic part, statistics for the noise. Skipped without CUDA."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rawsynth.isp import ISPBatch, fixed_isp_params, process, sample_isp_params
from rawsynth.kernels import iptp_mns, ptp, ptp_reference
from rawsynth.mns import NoiseParams, Pattern, SensorParams, mosaic, normalize

from ..conftest import photo

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SIZE = 512
PATTERNS = [p.value for p in Pattern]


def _srgb() -> torch.Tensor:
    x = torch.cat([torch.nn.functional.interpolate(photo(n, SIZE), size=(SIZE, SIZE), mode="bilinear")
                   for n in ("astronaut", "chelsea", "coffee", "rocket")])
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    x[:, :, :8] = 255  # highlights
    return x.cuda()


def _isp(b: int):
    return [sample_isp_params(np.random.default_rng(300 + i)) for i in range(b)]


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_full_size_matches_reference_without_noise(dtype):
    srgb = _srgb()
    if dtype == "float32":
        srgb = srgb.float() / 255
    args = (srgb, _isp(4), PATTERNS, NoiseParams(100.0, 0.0, 0.0), SensorParams(), [1, 2, 3, 4])
    dn_t, lin_t = iptp_mns(*args, return_linear=True, backend="torch")
    dn_k, lin_k = iptp_mns(*args, return_linear=True)  # auto: the kernel on CUDA
    torch.testing.assert_close(lin_k, lin_t, rtol=0, atol=1e-6 if dtype == "uint8" else 2e-6)
    diff = (dn_k.int() - dn_t.int()).abs()
    assert diff.max() <= 1 and (diff > 0).double().mean() < 1e-3


def test_full_size_noise_statistics_match_reference():
    b = 4
    srgb = torch.full((b, 3, SIZE, SIZE), 150, dtype=torch.uint8, device="cuda")
    srgb[:, 0] = 170
    sensor = SensorParams(16, 1000, 65535)
    shot, read = 2e-3, 2e-4
    args = (srgb, fixed_isp_params(), "RGGB", NoiseParams(1600.0, shot, read), sensor, list(range(10, 10 + b)))
    out = {}
    for backend in ("torch", "triton"):
        dn, lin = iptp_mns(*args, return_linear=True, backend=backend)
        out[backend] = (normalize(dn, sensor, dtype=torch.float64) - mosaic(lin, "RGGB").double())[:, 0]
        clean = mosaic(lin, "RGGB").double()[:, 0]
    for i in range(2):
        for j in range(2):
            var = shot * clean[0, i, j].item() + read
            n = out["torch"][:, i::2, j::2].numel()
            for backend in ("torch", "triton"):
                r = out[backend][:, i::2, j::2]
                assert abs(r.mean().item()) < 5 * (var / n) ** 0.5
                assert abs(r.var().item() / var - 1) < 5 * (2 / n) ** 0.5
            ratio = out["triton"][:, i::2, j::2].var() / out["torch"][:, i::2, j::2].var()
            assert abs(ratio.item() - 1) < 5 * (4 / n) ** 0.5
    z = out["triton"]
    assert abs(torch.corrcoef(z.reshape(b, -1))[0, 1].item()) < 5 / z[0].numel() ** 0.5


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
                    reason="compares the compiled tl.randn4x; TRITON_INTERPRET=1 interprets every kernel")
def test_randn4x_is_tritons():
    from rawsynth.kernels._common import kernel_module, launch

    dev = torch.device("cuda")
    k = kernel_module("_iptp_mns_triton", dev)
    n = 1 << 20
    a = torch.empty(4 * n, device=dev)
    b = torch.empty(4 * n, device=dev)
    for seed in (0, 99, -(2**62)):
        launch(k._randn4x_kernel, (n // 1024,), dev, seed, a, n, BLOCK=1024)
        launch(k._tl_randn4x_kernel, (n // 1024,), dev, seed, b, n, BLOCK=1024)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_ptp_full_size_forward_and_backward():
    g = torch.Generator(device="cuda").manual_seed(0)
    p = ISPBatch.from_params(_isp(4), device="cuda")
    x = torch.rand((4, 3, SIZE, SIZE), generator=g, device="cuda") * 1.15 - 0.05
    go = torch.randn(x.shape, generator=g, device="cuda")
    xr, xk = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yk = ptp_reference(xr, p), ptp(xk, p)
    torch.testing.assert_close(yk, yr, rtol=0, atol=2e-6)
    (gr,) = torch.autograd.grad(yr, xr, go)
    (gk,) = torch.autograd.grad(yk, xk, go)
    torch.testing.assert_close(gk, gr, rtol=2e-5, atol=1e-5)


def test_process_dispatches_on_cuda(monkeypatch):
    import rawsynth.kernels.ptp as kptp

    calls = []
    real = kptp.ptp

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(kptp, "ptp", spy)
    x = torch.rand((1, 3, 64, 64), device="cuda")
    y = process(x, fixed_isp_params())
    assert calls and torch.allclose(y, ptp_reference(x, fixed_isp_params()), atol=2e-6)
    monkeypatch.setenv("RAWSYNTH_KERNELS", "0")
    process(x, fixed_isp_params())
    process(x.double(), fixed_isp_params())
    assert len(calls) == 1
