"""Fused IPTP + MNS: the torch reference against the generator, the Triton kernel (run on the CPU by Triton's
interpreter, small sizes) against the reference, the noise field's statistics, seeds and dispatch."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rawsynth.errors import ConfigError, ShapeError
from rawsynth.isp import ISPBatch, apply_matrix, fixed_isp_params, sample_isp_params
from rawsynth.isp.iptp import HIGHLIGHT_INFLECTION
from rawsynth.kernels import Backend, iptp_mns, iptp_mns_reference, pattern_code, srgb_lut
from rawsynth.kernels._common import resolve_backend
from rawsynth.mns import NoiseParams, Pattern, SensorParams, mosaic, normalize
from rawsynth.pipeline import _LINEAR_LUT, SynthConfig, synthesize
from rawsynth.rng import derive_seed

from ..conftest import photo

pytest.importorskip("triton")

PATTERNS = [p.value for p in Pattern]  # all four, one per sample
NO_NOISE = NoiseParams(100.0, 0.0, 0.0)
SENSORS = [SensorParams(), SensorParams(14, 512, 16383), SensorParams(12, 0, 4095), SensorParams(16, 1024, 65535)]


def _batch(size: int = 16, b: int = 4) -> torch.Tensor:
    """``(b, 3, size, size)`` uint8: real photos with a saturated band (highlight path) and a black corner."""
    x = torch.cat([photo(n, 64)[..., :size, :size] for n in ("astronaut", "chelsea", "coffee", "rocket")][:b])
    x = (x * 255).round().to(torch.uint8)
    x[:, :, :2] = 255  # white: the highlight fade of the inverse white balance
    x[:, :, 2:4] = 255 - torch.arange(3, dtype=torch.uint8)[None, :, None, None] * 2  # near-white, tinted
    x[:, :, -2:, :2] = 0
    x[:, :, -2:, 2:8] = 0  # saturated primaries
    x[:, 0, -2:, 2:4] = 255
    x[:, 1, -2:, 4:6] = 255
    x[:, 2, -2:, 6:8] = 255
    return x


def _isp(b: int):
    return [sample_isp_params(np.random.default_rng(100 + i)) for i in range(b)]


def test_reference_is_the_generator():
    """With 8-bit input and the generator's noise-field seed, the reference makes rawsynth generate's bytes."""
    hq = (photo("coffee", 32)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cfg = SynthConfig(mode="ddnet", crop=32)
    s = synthesize(hq, "k_7", 3, cfg)
    srgb = torch.from_numpy(hq).permute(2, 0, 1)[None]
    dn, lin = iptp_mns_reference(srgb, s.isp, s.pattern, s.noise, s.sensor,
                                 [derive_seed(3, "k_7", "noise-field")], return_linear=True)
    assert torch.equal(dn[0, 0], torch.from_numpy(s.raw_dn))
    assert torch.equal(lin[0].permute(1, 2, 0), torch.from_numpy(s.hq_linear))
    assert torch.equal(srgb_lut(), torch.from_numpy(_LINEAR_LUT))


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_kernel_equals_reference_without_noise(dtype):
    srgb = _batch()
    if dtype == "float32":
        srgb = srgb.float() / 255.0
    args = (srgb, _isp(4), PATTERNS, NO_NOISE, SENSORS, [1, 2, 3, 2**63 + 5])
    dn_t, lin_t = iptp_mns(*args, return_linear=True, backend="torch")
    dn_k, lin_k = iptp_mns(*args, return_linear=True, backend="triton")
    assert dn_k.dtype == torch.uint16 and dn_k.shape == (4, 1, 16, 16) and lin_k.shape == (4, 3, 16, 16)
    cam = apply_matrix(srgb_lut()[_batch().long()], ISPBatch.from_params(_isp(4)).rgb2cam)
    assert (cam.mean(1) > HIGHLIGHT_INFLECTION).any() and (lin_t == 1).any()  # highlight fade and clip are used
    if dtype == "uint8":  # the same float operations: the same bits
        assert torch.equal(lin_k, lin_t)
        assert torch.equal(dn_k, dn_t)
    else:  # the transfer curve is evaluated differently (polynomial asin/sin, exp2·log2)
        torch.testing.assert_close(lin_k, lin_t, rtol=0, atol=1e-6)
        diff = (dn_k.int() - dn_t.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    # the mosaic really follows each sample's pattern: DN of the reference's clean mosaic
    clean = normalize(dn_t, SENSORS)
    torch.testing.assert_close(clean, mosaic(lin_t, PATTERNS), rtol=0, atol=0.5 / 3839 + 1e-7)
    # without return_linear the DN are the same and no linear comes back
    dn_only, none = iptp_mns(*args, backend="triton")
    assert none is None and torch.equal(dn_only, dn_k)


def test_linear_is_returned_as_float_and_layout_does_not_matter():
    srgb = _batch(b=2)
    args = (_isp(2), ["GRBG", "BGGR"], NoiseParams(800.0, 1e-3, 1e-4), SensorParams(), [7, 8])
    dn_a, lin_a = iptp_mns(srgb, *args, return_linear=True, backend="triton")
    cl = srgb.contiguous(memory_format=torch.channels_last)
    dn_b, lin_b = iptp_mns(cl, *args, return_linear=True, backend="triton")
    assert torch.equal(dn_a, dn_b) and torch.equal(lin_a, lin_b)
    view = torch.cat([srgb, srgb], dim=3)[..., ::2]  # a strided view
    assert not view.is_contiguous()
    dn_c, _ = iptp_mns(view, *args, backend="triton")
    dn_d, _ = iptp_mns(view.contiguous(), *args, backend="triton")
    assert torch.equal(dn_c, dn_d)


def _flat_noise_batch(seeds, size=96, shot=2e-3, read=2e-4, backend="triton"):
    """Flat mid-grey inputs; returns (noisy normalised mosaic, clean mosaic, λ_shot, λ_read)."""
    b = len(seeds)
    srgb = torch.full((b, 3, size, size), 150, dtype=torch.uint8)
    srgb[:, 0] = 170  # unequal channels: the four positions see different levels
    isp = fixed_isp_params()
    noise = NoiseParams(1600.0, shot, read)
    sensor = SensorParams(16, 1000, 65535)  # fine DN: the quantisation variance is negligible
    dn, lin = iptp_mns(srgb, isp, "RGGB", noise, sensor, seeds, return_linear=True, backend=backend)
    return normalize(dn, sensor, dtype=torch.float64), mosaic(lin, "RGGB").double(), shot, read


def test_noise_is_heteroscedastic_gaussian_per_cfa_position():
    y, x, shot, read = _flat_noise_batch([11, 12])
    r = y - x
    for i in range(2):
        for j in range(2):
            res = r[:, 0, i::2, j::2].reshape(-1)
            level = x[0, 0, i, j].item()
            assert torch.allclose(x[:, 0, i::2, j::2], torch.tensor(level, dtype=torch.float64))
            var = shot * level + read
            n = res.numel()  # 2 · 48² = 4608 per position
            assert abs(res.mean().item()) < 5 * (var / n) ** 0.5
            assert abs(res.var().item() / var - 1) < 5 * (2 / n) ** 0.5
            within = (res.abs() < var**0.5).double().mean().item()  # Gaussian: 68.27 %
            assert abs(within - 0.6827) < 5 * (0.6827 * 0.3173 / n) ** 0.5
    levels = x[0, 0, :2, :2].reshape(-1)
    assert levels.max() - levels.min() > 0.05  # the positions really differ in level (and variance)


def test_noise_is_independent_across_samples_and_pixels():
    y, x, *_ = _flat_noise_batch([21, 22])
    r = (y - x)[:, 0]
    z = (r - r.mean()) / r.std()
    n = z[0].numel()
    bound = 5 / n**0.5
    assert abs((z[0] * z[1]).mean().item()) < bound  # between the two samples
    assert abs((z[:, :, 1:] * z[:, :, :-1]).mean().item()) < bound * 2**0.5  # horizontal neighbours
    assert abs((z[:, 1:] * z[:, :-1]).mean().item()) < bound * 2**0.5  # vertical neighbours


def test_same_seed_same_bytes_different_seed_different_bytes():
    srgb = _batch(b=2)
    args = (_isp(2), ["RGGB", "GBRG"], NoiseParams(800.0, 1e-3, 1e-4), SensorParams())
    a, _ = iptp_mns(srgb, *args, [5, 6], backend="triton")
    b, _ = iptp_mns(srgb, *args, torch.tensor([5, 6]), backend="triton")
    c, _ = iptp_mns(srgb, *args, [5, 9], backend="triton")
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    # a sample's noise is keyed by its seed alone, not by its place in the batch
    d, _ = iptp_mns(srgb[1:], args[0][1:], ["GBRG"], args[2], args[3], [6], backend="triton")
    assert torch.equal(d[0], a[1])
    # 64-bit seeds: 2**64 - 1 and -1 are the same unsigned key; high bits count
    e, _ = iptp_mns(srgb, *args, [2**64 - 1, 2**63], backend="triton")
    f, _ = iptp_mns(srgb, *args, [-1, -(2**63)], backend="triton")
    g, _ = iptp_mns(srgb, *args, [2**63 - 1, 0], backend="triton")
    assert torch.equal(e, f) and not torch.equal(e[0], g[0]) and not torch.equal(e[1], g[1])
    # the reference: same seed, same bytes too
    r1, _ = iptp_mns(srgb, *args, [5, 6], backend="torch")
    r2, _ = iptp_mns(srgb, *args, [5, 6], backend="torch")
    assert torch.equal(r1, r2) and not torch.equal(r1, a)


def test_isp_batch_and_single_params_are_accepted():
    srgb = _batch(b=2)
    isp = _isp(2)
    args = (["RGGB", "RGGB"], NO_NOISE, SensorParams(), [1, 2])
    a, _ = iptp_mns(srgb, isp, *args, backend="triton")
    b, _ = iptp_mns(srgb, ISPBatch.from_params(isp), *args, backend="triton")
    assert torch.equal(a, b)
    c, _ = iptp_mns(srgb, isp[0], "RGGB", *args[1:], backend="triton")
    d, _ = iptp_mns(srgb, [isp[0], isp[0]], *args, backend="triton")
    assert torch.equal(c, d)


def test_pattern_code():
    for p in Pattern:
        code = pattern_code(p)
        for y in range(2):
            for x in range(2):
                assert (code >> (2 * (2 * y + x))) & 3 == p.colors[y][x]


def test_bad_arguments_raise():
    srgb = _batch(b=2)
    ok = dict(isp=fixed_isp_params(), patterns="RGGB", noise=NO_NOISE, sensor=SensorParams(), seeds=[1, 2])
    for backend in ("torch", "triton"):
        with pytest.raises(ShapeError, match="even"):
            iptp_mns(srgb[..., :15], **ok, backend=backend)
        with pytest.raises(ShapeError, match="uint8 or floating"):
            iptp_mns(srgb.to(torch.int16), **ok, backend=backend)
        with pytest.raises(ShapeError, match="seeds"):
            iptp_mns(srgb, **{**ok, "seeds": [1]}, backend=backend)
        with pytest.raises(ShapeError, match="seeds"):
            iptp_mns(srgb, **{**ok, "seeds": [1, 2**64]}, backend=backend)
        with pytest.raises(ShapeError, match="pattern"):
            iptp_mns(srgb, **{**ok, "patterns": ["RGGB", "RGBG"]}, backend=backend)
        with pytest.raises(ShapeError, match="noise"):
            iptp_mns(srgb, **{**ok, "noise": [NO_NOISE]}, backend=backend)
        with pytest.raises(ShapeError, match="3 channel"):
            iptp_mns(srgb[:, :2], **ok, backend=backend)
    with pytest.raises(ConfigError, match="backend"):
        iptp_mns(srgb, **ok, backend="cuda")


def test_dispatch(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) is Backend.TORCH
    assert resolve_backend("auto", cuda) is Backend.TRITON
    assert resolve_backend("torch", cuda) is Backend.TORCH
    assert resolve_backend("triton", cpu) is Backend.TRITON
    monkeypatch.setenv("RAWSYNTH_KERNELS", "0")
    assert resolve_backend("auto", cuda) is Backend.TORCH
    assert resolve_backend("triton", cuda) is Backend.TRITON  # an explicit choice still holds
    # auto on the CPU is the reference, byte for byte
    srgb = _batch(b=2)
    args = (fixed_isp_params(), "RGGB", NoiseParams(800.0, 1e-3, 1e-4), SensorParams(), [1, 2])
    assert torch.equal(iptp_mns(srgb, *args)[0], iptp_mns_reference(srgb, *args)[0])


def test_interpreter_does_not_leak():
    import triton

    before = os.environ.get("TRITON_INTERPRET")
    iptp_mns(_batch(b=1), fixed_isp_params(), "RGGB", NO_NOISE, SensorParams(), [1], backend="triton")
    assert os.environ.get("TRITON_INTERPRET") == before
    assert triton.knobs.runtime.interpret == (before == "1")


def _philox_randn4x_oracle(seed: int, n: int) -> np.ndarray:
    """Independent numpy Philox4x32-10 (Salmon et al. 2011) + Triton's int→uniform and Box–Muller pairs:
    ``(n, 4)`` float32, row ``i`` the four normals of counter ``i``."""
    m32 = np.uint64(0xFFFFFFFF)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    c = [np.arange(n, dtype=np.uint64), np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, np.uint64)]
    ra, rb = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for _ in range(10):
        p0, p2 = ra * c[0], rb * c[2]  # full 64-bit products of 32-bit words
        c = [((p2 >> np.uint64(32)) ^ c[1] ^ k0) & m32, p2 & m32, ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & m32, p0 & m32]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & m32, (k1 + np.uint64(0xBB67AE85)) & m32

    def uniform(w):
        i = w.astype(np.uint32).view(np.int32)
        return np.where(i < 0, ~i, i).astype(np.float32) * np.float32(4.6566127342e-10)

    out = []
    for a, b in ((c[0], c[1]), (c[2], c[3])):
        r = np.sqrt(np.float32(-2.0) * np.log(np.maximum(np.float32(1e-7), uniform(a))))
        th = np.float32(6.283185307179586) * uniform(b)
        out += [r * np.cos(th), r * np.sin(th)]
    return np.stack(out, axis=1)


@pytest.mark.parametrize("seed", [0, 12345, 2**63 + 2**40 + 7])
def test_noise_rng_is_philox_keyed_by_seed_and_counter(seed):
    from rawsynth.kernels._common import kernel_module, launch

    cpu = torch.device("cpu")
    k = kernel_module("_iptp_mns_triton", cpu)
    n = 500
    out = torch.empty(4 * n)
    signed = seed - 2**64 if seed >= 2**63 else seed
    launch(k._randn4x_kernel, (2,), cpu, signed, out, n, BLOCK=256)
    torch.testing.assert_close(out.view(n, 4), torch.from_numpy(_philox_randn4x_oracle(seed, n)), rtol=0, atol=2e-6)


def test_noise_field_layout():
    """Pixel (y, x) of a sample takes normal x % 4 of Philox counter y · ceil(W / 4) + x // 4 (zero signal, read
    noise only: the DN are the normals scaled and rounded)."""
    h, w, read, sensor = 4, 6, 1e-2, SensorParams(16, 30000, 65535)
    dn, _ = iptp_mns(torch.zeros((1, 3, h, w), dtype=torch.uint8), fixed_isp_params(), "RGGB",
                     NoiseParams(100.0, 0.0, read), sensor, [77], backend="triton")
    w4 = -(-w // 4)
    z = torch.from_numpy(_philox_randn4x_oracle(77, h * w4)).view(h, w4 * 4)[:, :w].double()
    expect = torch.round(z * read**0.5 * sensor.range + sensor.black_level)  # black sRGB: linear ~1e-18
    assert (dn[0, 0].double() - expect).abs().max() <= 1
