"""The chain's public stage ops pick their fast path inside: ``rawsynth.degrade.degrade``,
``rawsynth.isp.unprocess`` (uint8 table path, Triton backend) and ``rawsynth.mns.srgb_to_raw`` (the ops composed,
or the fused kernel) give the bytes of the paths they replace (the kernel run by Triton's interpreter on the CPU,
small sizes); the shards' bytes themselves are pinned by ``tests/test_golden.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rawsynth.degrade import DegradationConfig, degrade, sample_degradation
from rawsynth.degrade.ops import apply_degradation_u8
from rawsynth.degrade.gpu import degrade_batch_gpu
from rawsynth.errors import ConfigError, ShapeError
from rawsynth.isp import lut_lookup, linear_lut, sample_isp_params, unprocess
from rawsynth.kernels import iptp_mns_reference
from rawsynth.mns import NoiseParams, Pattern, SensorParams, add_noise, mosaic, quantize, srgb_to_raw
from rawsynth.pipeline import SynthConfig, sample_recipe, synthesize
from rawsynth.rng import derive_seed, torch_generator

from .conftest import photo


def _u8(b: int = 2, size: int = 16) -> torch.Tensor:
    x = torch.cat([photo(n, 32)[..., :size, :size] for n in ("astronaut", "coffee", "chelsea")][:b])
    x = (x * 255).round().to(torch.uint8)
    x[:, :, :2] = 255  # the highlight fade of the inverse white balance
    x[:, :, -2:, :4] = 0
    return x


def _isp(b: int):
    return [sample_isp_params(np.random.default_rng(7 + i)) for i in range(b)]


def test_unprocess_uint8_is_the_table_then_the_float_chain():
    x, isp = _u8(), _isp(2)
    lin = unprocess(x, isp)
    assert lin.dtype == torch.float32 and lin.shape == x.shape and lin.is_contiguous()
    # the table is the float maths at k / 255 (to float32 rounding), and cv2.LUT == indexing
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(lut_lookup(levels).flatten(), linear_lut())
    assert torch.equal(lut_lookup(x), linear_lut()[x.long()])
    torch.testing.assert_close(lin, unprocess(x.float() / 255, isp), atol=2e-6, rtol=0)
    cl = x.contiguous(memory_format=torch.channels_last)
    lin_cl = unprocess(cl, isp)
    assert lin_cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(lin_cl, lin)
    with pytest.raises(ConfigError, match="unknown backend"):
        unprocess(x, isp, backend="cuda")
    with pytest.raises(ShapeError):
        unprocess(x.to(torch.int32), isp)


def test_unprocess_triton_backend_is_bit_identical_on_uint8():
    pytest.importorskip("triton")
    x, isp = _u8(), _isp(2)
    assert torch.equal(unprocess(x, isp, backend="triton"), unprocess(x, isp, backend="torch"))
    # "auto" keeps float (differentiable) input and CPU tensors on torch
    f = (x.float() / 255).requires_grad_()
    unprocess(f, isp).sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def test_srgb_to_raw_torch_is_the_ops_composed_and_the_reference():
    x, isp = _u8(), _isp(2)
    hq = _u8().flip(-1).contiguous()
    pats, sensor = [Pattern.RGGB, Pattern.GBRG], SensorParams(14, 512, 16383)
    noise, seeds = [NoiseParams(800, 2e-3, 1e-4), NoiseParams(100, 1e-4, 1e-6)], [5, -3]
    dn, lin = srgb_to_raw(x, isp, pats, noise, sensor, seeds, hq=hq, backend="torch")
    ref_dn, _ = iptp_mns_reference(x, isp, pats, noise, sensor, seeds)
    _, ref_lin = iptp_mns_reference(hq, isp, pats, noise, sensor, seeds, return_linear=True)
    assert torch.equal(dn, ref_dn) and torch.equal(lin, ref_lin)
    g = torch.Generator().manual_seed(5)  # sample 0 by hand, op by op
    manual = quantize(add_noise(mosaic(unprocess(x[:1], isp[:1]), pats[0]), noise[0], g), sensor)
    assert torch.equal(dn[:1], manual)
    assert srgb_to_raw(x, isp, pats, noise, sensor, seeds, backend="torch")[1] is None
    with pytest.raises(ConfigError, match="unknown backend"):
        srgb_to_raw(x, isp, pats, noise, sensor, seeds, backend="cuda")
    with pytest.raises(ShapeError, match="seeds"):
        srgb_to_raw(x, isp, pats, noise, sensor, [1], backend="torch")


def test_srgb_to_raw_triton_equals_torch_without_noise():
    pytest.importorskip("triton")
    x, isp, hq = _u8(), _isp(2), _u8().flip(-2).contiguous()
    args = (x, isp, ["BGGR", "GRBG"], NoiseParams(100, 0.0, 0.0), SensorParams(), [1, 2])
    t = srgb_to_raw(*args, hq=hq, backend="triton")
    r = srgb_to_raw(*args, hq=hq, backend="torch")
    assert torch.equal(t[0], r[0]) and torch.equal(t[1], r[1])


def test_synthesize_is_the_public_ops_in_order():
    """A shard sample, remade from the public ops by hand (rddm mode: degrade first)."""
    hq8 = (photo("chelsea", 64)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    s = synthesize(hq8, "k_3", 11, SynthConfig(crop=64))
    assert s.meta["degradation"] is not None
    r = sample_recipe(11, "k_3", SynthConfig(crop=64), (64, 64))
    lq8 = degrade(hq8, r.degradation)
    src = unprocess(torch.from_numpy(lq8).permute(2, 0, 1)[None], r.isp)
    noisy = add_noise(mosaic(src, r.pattern), r.noise, torch_generator(11, "k_3", "noise-field"))
    assert np.array_equal(quantize(noisy, r.sensor)[0, 0].numpy(), s.raw_dn)
    assert r.noise_seed == derive_seed(11, "k_3", "noise-field")


def test_degrade_one_image_and_batches():
    x = _u8(2, 32)
    degs = [sample_degradation(np.random.default_rng(i), DegradationConfig(), (32, 32)) for i in range(2)]
    hwc = [x[i].permute(1, 2, 0).numpy() for i in range(2)]
    one = degrade(np.ascontiguousarray(hwc[0]), degs[0])
    assert one.dtype == np.uint8 and np.array_equal(one, apply_degradation_u8(hwc[0].astype(np.float32) / 255,
                                                                               degs[0]))
    batch = degrade(x, degs)  # CPU tensor: "auto" is the reference chain
    assert batch.dtype == torch.uint8 and np.array_equal(batch[0].permute(1, 2, 0).numpy(), one)
    assert torch.equal(degrade(x, degs, backend="reference"), batch)
    batched = degrade(x, degs, backend="batched", jpeg="libjpeg")
    assert torch.equal(batched, degrade_batch_gpu(x.float() / 255, degs, jpeg="libjpeg", as_uint8=True))
    assert (batched.int() - batch.int()).abs().float().mean() < 1.0  # the same maths, to rounding
    for bad, err in [({"backend": "gpu"}, ConfigError), ({"blur": "box"}, ConfigError),
                     ({"jpeg": "png"}, ConfigError)]:
        with pytest.raises(err):
            degrade(x, degs, **bad)
    with pytest.raises(ConfigError, match="batched"):
        degrade(np.ascontiguousarray(hwc[0]), degs[0], backend="batched")
    with pytest.raises(ShapeError):
        degrade(x.float(), degs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_picks_the_fast_paths():  # pragma: no cover - needs a GPU
    from rawsynth.kernels import iptp_mns

    x, isp = _u8().cuda(), _isp(2)
    assert torch.equal(unprocess(x, isp), unprocess(x, isp, backend="torch"))  # the kernel, bit-identical
    args = (x, isp, ["RGGB", "BGGR"], NoiseParams(800, 2e-3, 1e-4), SensorParams(), [3, 4])
    dn, lin = srgb_to_raw(*args, hq=x.flip(-1).contiguous())
    ref_dn, ref_lin = iptp_mns(*args, backend="triton", hq=x.flip(-1).contiguous())
    assert torch.equal(dn, ref_dn) and torch.equal(lin, ref_lin)  # "auto" on CUDA is the fused kernel
    x32 = _u8(2, 32).cuda()
    degs = [sample_degradation(np.random.default_rng(i), DegradationConfig(), (32, 32)) for i in range(2)]
    assert torch.equal(degrade(x32, degs), degrade_batch_gpu(x32.float() / 255, degs, as_uint8=True))
