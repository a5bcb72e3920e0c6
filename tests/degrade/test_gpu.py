"""degrade_batch_gpu: the batched (GPU) degradation against the CPU chain, op by op and end to end.

Everything runs on the CPU here (the GPU path is device-agnostic; its JPEG then uses torchvision's libjpeg);
the tests marked ``cuda`` repeat the end-to-end comparison on a GPU when one is present.
"""

import math
import warnings

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from rawsynth.degrade import (DegradationConfig, FinalConfig, KernelParams, apply_degradation, build_kernel,
                              degrade_batch, sample_degradation)
from rawsynth.degrade.gpu import blur_batch, blur_method, degrade_batch_gpu, resize_batch, resize_weights
from rawsynth.degrade.ops import blur_kernel, jpeg, resize
from rawsynth.errors import ConfigError, ShapeError

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# The CPU chain and this one compute the same maths; JPEG is the same libjpeg (byte-identical files, see
# test_jpeg_codec_is_opencvs). They differ only where float rounding decides an 8-bit rounding: resizes of 8-bit
# images land on exact half levels (ties) and the CPU chain's cv2/ATen code and our matmuls round those ties by
# their own last bits; a flip ahead of a JPEG changes a block, and the resizes after it spread that. Measured over
# 400 draws at 128² (4 photos, conv and FFT blur; /tmp script, seed 123): 72% bit-identical, median PSNR 99 dB,
# 1st percentile 54.9 dB, worst 45.8 dB (23.6% of values off by a level or two). At 256², 80 draws: worst 57.3 dB.
MIN_PSNR = 40.0


def _hwc(name: str, size: int) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[:size, :size]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def imgs128():
    return [_hwc(n, 128) for n in PHOTOS]


def _batch(imgs) -> torch.Tensor:
    return torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in imgs]).contiguous()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _dense(n_in, n_out, mode, f) -> np.ndarray:
    idx, w = resize_weights(n_in, n_out, mode, f)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), idx.shape[1]), idx.ravel()), w.ravel())
    return m


def _interp_matrix(n_in, n_out, mode, f) -> np.ndarray:
    """F.interpolate of the identity along one axis = its interpolation matrix (an independent oracle)."""
    eye = torch.eye(n_in, dtype=torch.float32)[None, None]
    kw = {} if mode == "area" else {"align_corners": False}
    if f is None:
        out = F.interpolate(eye, size=(n_out, n_in), mode=mode, **kw)
    else:
        out = F.interpolate(eye, scale_factor=(f, 1.0), mode=mode, **kw)
    return out[0, 0].double().numpy()


def test_resize_weights_are_interpolates():
    """The 1-D taps equal ATen's (rows of F.interpolate(eye)) for every mode, by size and by factor, up and
    down, the same-length special cases (bilinear copies even with a factor != 1, bicubic does not) and n = 1."""
    rng = np.random.default_rng(0)
    cases = [(2, 2, "bilinear", 1.2479), (29, 29, "bilinear", 1.0105), (29, 29, "bicubic", 1.0105),
             (1, 3, "bicubic", None), (1, 1, "area", None), (5, 1, "area", None), (3, 7, "area", None)]
    for t in range(150):
        mode = ("bilinear", "bicubic", "area")[t % 3]
        n_in = int(rng.integers(1, 90))
        if t % 2:
            f = float(rng.uniform(0.15, 1.5))
            n_out = math.floor(n_in * f)
        else:
            f, n_out = None, int(rng.integers(1, 120))
        if n_out >= 1:
            cases.append((n_in, n_out, mode, f))
    for n_in, n_out, mode, f in cases:
        assert np.abs(_dense(n_in, n_out, mode, f) - _interp_matrix(n_in, n_out, mode, f)).max() < 1e-5, \
            (n_in, n_out, mode, f)


def test_resize_batch_equals_cpu_resize(imgs128):
    """A ragged batch (different sizes in, different sizes and modes out) = ops.resize per sample."""
    ins = [(128, 128), (37, 90), (1, 5), (64, 33)]
    outs = [(91, 140), (20, 45), (3, 2), (64, 33)]
    modes = ["bicubic", "bilinear", "area", "bicubic"]
    imgs = [imgs128[i][:h, :w] for i, (h, w) in enumerate(ins)]
    data = torch.zeros(4, 3, 128, 128)
    for i, im in enumerate(imgs):
        data[i, :, :im.shape[0], :im.shape[1]] = torch.from_numpy(im).permute(2, 0, 1)
    out = resize_batch(data, ins, outs, modes)
    assert out.shape == (4, 3, 91, 140)
    for i, (im, (h, w)) in enumerate(zip(imgs, outs)):
        ref = resize(np.ascontiguousarray(im), modes[i], size=(h, w))
        np.testing.assert_allclose(out[i, :, :h, :w].permute(1, 2, 0).numpy(), ref, atol=1e-5)
        assert not out[i, :, h:].any() and not out[i, :, :, w:].any()  # zeros outside the sample
    f = 1.3178
    by_f = resize_batch(data[:1], ins[:1], [(math.floor(128 * f),) * 2], ["bilinear"], [f])
    np.testing.assert_allclose(by_f[0].permute(1, 2, 0).numpy(), resize(imgs[0], "bilinear", scale_factor=f),
                               atol=1e-5)


def test_blur_conv_and_fft_equal_opencv(imgs128):
    """Every kernel kind and size, ragged sizes down to 1 pixel (reflect-101 repeated): conv = FFT = cv2."""
    rng = np.random.default_rng(1)
    kps = [KernelParams("plateau_aniso", 21, 2.9, 0.4, 1.1, beta=1.5), KernelParams("iso", 7, 1.0, 1.0, 0.0),
           KernelParams("sinc", 13, omega_c=math.pi / 4), KernelParams("generalized_aniso", 9, 0.3, 2.7, -2.0,
                                                                      beta=0.6)]
    while len(kps) < 8:
        p = sample_degradation(rng, None, (64, 64))
        kps += [k for k in (p.first.kernel, p.final.sinc) if k is not None]
    sizes = [(128, 128), (5, 3), (1, 1), (2, 17), (64, 100), (11, 11), (128, 7), (40, 40)]
    data = torch.zeros(8, 3, 128, 128)
    for i, (h, w) in enumerate(sizes):
        data[i, :, :h, :w] = torch.from_numpy(imgs128[i % 4][:h, :w]).permute(2, 0, 1)
    kernels = [None if i == 5 else build_kernel(kp, pad_to=None) for i, kp in enumerate(kps[:8])]
    conv = blur_batch(data, sizes, kernels, "conv")
    fft = blur_batch(data, sizes, kernels, "fft")
    assert torch.abs(conv - fft).max() < 1e-5
    for i, (h, w) in enumerate(sizes):
        ref = imgs128[i % 4][:h, :w] if kernels[i] is None else blur_kernel(
            np.ascontiguousarray(imgs128[i % 4][:h, :w]), kps[i])
        np.testing.assert_allclose(conv[i, :, :h, :w].permute(1, 2, 0).numpy(), ref, atol=1e-5)
        assert not conv[i, :, h:].any() and not conv[i, :, :, w:].any()
    assert blur_method(7) == "conv" and blur_method(21) == "fft"


def test_jpeg_codec_is_opencvs():
    """torchvision's CPU JPEG (the GPU path's codec on CPU tensors) writes the very bytes OpenCV writes."""
    from torchvision.io import decode_jpeg, encode_jpeg

    img = np.ascontiguousarray(skimage.data.chelsea()[:75, :131])
    for q in (30, 57, 95):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [
            cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            enc = encode_jpeg(torch.from_numpy(img).permute(2, 0, 1).contiguous(), quality=q)
            dec = decode_jpeg(enc).permute(1, 2, 0).numpy()
        assert bytes(enc.numpy()) == buf.tobytes()
        np.testing.assert_array_equal(dec, jpeg(img, q))


def _draws(rng, n, size, cfg=None):
    return [sample_degradation(rng, cfg, size) for _ in range(n)]


def test_full_chain_matches_cpu_chain_mixed_batch(imgs128):
    """One batch with mixed per-sample parameters (both final orders, sinc on/off, blurs, resizes, modes):
    every sample equals apply_degradation within the float-rounding bound."""
    rng = np.random.default_rng(9)  # a seed whose 8 draws mix all of these
    ps = _draws(rng, 8, (128, 128))
    assert len({p.final.order for p in ps}) == 2 and len({p.final.sinc is None for p in ps}) == 2
    assert len({p.first.resize for p in ps}) == 3 and len({p.second.kernel is None for p in ps}) == 2
    x = _batch([imgs128[i % 4] for i in range(8)])
    out = degrade_batch_gpu(x, ps)
    assert out.shape == x.shape and out.dtype == torch.float32
    identical = 0
    for i, p in enumerate(ps):
        ours, ref = out[i].permute(1, 2, 0).numpy(), apply_degradation(imgs128[i % 4], p)
        assert _psnr(ours, ref) > MIN_PSNR, p
        identical += int(np.array_equal(ours, ref))
    assert identical >= 3  # 72% expected
    np.testing.assert_array_equal(np.rint(out.numpy() * 255) / 255, out.numpy().astype(np.float64))  # 8-bit
    u8 = degrade_batch_gpu(x, ps, as_uint8=True, blur="fft")
    assert u8.dtype == torch.uint8
    for i in range(len(ps)):  # FFT blur: the same bound
        assert _psnr(u8[i].permute(1, 2, 0).numpy() / 255.0, out[i].permute(1, 2, 0).numpy()) > MIN_PSNR
    one = degrade_batch_gpu(x[:2].double(), ps[0])  # one params object for all; dtype kept
    assert one.dtype == torch.float64
    assert _psnr(one[1].permute(1, 2, 0).numpy(), apply_degradation(imgs128[1], ps[0])) > MIN_PSNR


def test_small_images_and_other_configs():
    """16x20 images (the second order goes down to 1 pixel), no resize back, scale 2, second-order JPEG."""
    rng = np.random.default_rng(3)
    img = np.random.default_rng(0).random((16, 20, 3), dtype=np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(6, 1, 1, 1)
    for cfg in (None, DegradationConfig(resize_back=False), DegradationConfig(scale=2, final=FinalConfig(
            sinc_prob=1.0)), DegradationConfig.from_dict({"second": {"jpeg_range": [40, 60]}})):
        ps = _draws(rng, 6, (16, 20), cfg)
        out = degrade_batch_gpu(x, ps)
        for i, p in enumerate(ps):
            ref = apply_degradation(img, p)
            assert out[i].shape == (3, *p.out_size)
            assert _psnr(out[i].permute(1, 2, 0).numpy(), ref) > MIN_PSNR - 5, p  # 320 px: one flip is 55 dB


def test_tf32_flags_are_restored(imgs128):
    x = _batch(imgs128[:1])
    p = _draws(np.random.default_rng(4), 1, (128, 128))
    from rawsynth.degrade.gpu import _precision_knobs, _true_fp32

    knobs = _precision_knobs()  # torch >= 2.9: the fp32_precision API (mixing it with allow_tf32 raises)
    assert knobs and all(hasattr(ns, attr) for ns, attr, _ in knobs)
    before = [getattr(ns, attr) for ns, attr, _ in knobs]
    with _true_fp32():
        assert [getattr(ns, attr) for ns, attr, _ in knobs] == [v for _, _, v in knobs]
        assert torch.backends.cuda.matmul.allow_tf32 is False  # the legacy view agrees
    degrade_batch_gpu(x, p)
    assert [getattr(ns, attr) for ns, attr, _ in knobs] == before


def test_bad_inputs(imgs128):
    x = _batch(imgs128[:2])
    ps = _draws(np.random.default_rng(5), 2, (128, 128))
    bad_x = [x[0], x[:, :2], (x * 255).to(torch.uint8), x * 2 - 0.5, torch.full_like(x, float("nan")), x[..., :124],
             x[..., :126], x[:0]]
    for b in bad_x:
        with pytest.raises(ShapeError):
            degrade_batch_gpu(b, ps)
    with pytest.raises(ShapeError, match="2 values"):
        degrade_batch_gpu(x[:1], ps)
    with pytest.raises(TypeError):
        degrade_batch_gpu(x, [ps[0], ps[1].to_dict()])
    with pytest.raises(ShapeError, match="in_size"):
        degrade_batch_gpu(x, _draws(np.random.default_rng(0), 2, (64, 64)))
    with pytest.raises(ShapeError, match="different output sizes"):
        degrade_batch_gpu(x, [ps[0], sample_degradation(np.random.default_rng(0), DegradationConfig(
            resize_back=False), (128, 128))])
    with pytest.raises(ConfigError, match="blur"):
        degrade_batch_gpu(x, ps, blur="direct")
    with pytest.raises(ConfigError, match="CUDA"):
        degrade_batch_gpu(x, ps, jpeg="nvjpeg")
    with pytest.raises(ConfigError):
        degrade_batch_gpu(x, ps, jpeg="pillow")


@cuda
def test_cuda_dispatch_and_codecs(imgs128):  # pragma: no cover - needs a GPU
    """On CUDA: degrade_batch stays on the GPU; with the shards' codec (libjpeg on the host) the result is the
    CPU chain's within the float bound; with the default tensor JPEG (~50 dB from libjpeg per stage, measured
    on the CPU) within a looser one; with nvJPEG (4:4:4 chroma, its own DCT) looser still. The 4:4:4-vs-4:2:0
    gap alone, measured on the CPU with libjpeg at both settings over 40 draws at 256², is 28.4–40.1 dB
    (median 34.6)."""
    rng = np.random.default_rng(6)
    ps = _draws(rng, 8, (128, 128))
    x = _batch([imgs128[i % 4] for i in range(8)]).cuda()
    out = degrade_batch(x, ps)  # the tensor JPEG
    assert out.is_cuda and out.shape == x.shape
    exact = degrade_batch_gpu(x, ps, jpeg="libjpeg").cpu()
    nv = degrade_batch_gpu(x, ps, jpeg="nvjpeg").cpu()
    for i, p in enumerate(ps):
        ref = apply_degradation(imgs128[i % 4], p)
        assert _psnr(exact[i].permute(1, 2, 0).numpy(), ref) > MIN_PSNR
        assert _psnr(out[i].cpu().permute(1, 2, 0).numpy(), ref) > 35.0  # CPU: worst 40.3 dB over 40 draws
        assert _psnr(nv[i].permute(1, 2, 0).numpy(), ref) > 25.0
    conv = degrade_batch_gpu(x, ps, blur="conv", jpeg="libjpeg").cpu()
    for i in range(len(ps)):
        assert _psnr(conv[i].numpy(), exact[i].numpy()) > MIN_PSNR


def test_jpeg_host_calls_per_stage(imgs128, monkeypatch):
    """One batched decode call per JPEG stage, one encode call per distinct quality, and the same bytes as a
    one-image-at-a-time round trip (libjpeg on the CPU: byte-identical per image)."""
    import torchvision.io as tio

    from rawsynth.degrade import gpu as g
    from rawsynth.degrade.config import FinalOrder

    calls = {"encode": [], "decode": []}
    enc, dec = tio.encode_jpeg, tio.decode_jpeg

    def spy_enc(x, *a, **k):
        calls["encode"].append(len(x) if isinstance(x, list) else 1)
        return enc(x, *a, **k)

    def spy_dec(x, *a, **k):
        calls["decode"].append(len(x) if isinstance(x, list) else 1)
        return dec(x, *a, **k)

    monkeypatch.setattr(tio, "encode_jpeg", spy_enc)
    monkeypatch.setattr(tio, "decode_jpeg", spy_dec)
    u8 = (_batch(imgs128) * 255).round().to(torch.uint8)
    u8 = torch.cat([u8, u8.flip(-1)])  # 8 samples
    sizes = [(128, 128), (100, 90), (128, 128), (31, 7), (64, 64), (128, 128), (2, 2), (77, 128)]
    qualities = [50, 70, None, 50, 95, 70, 50, 30]
    out = g._jpeg_u8(u8, sizes, qualities, "libjpeg")
    assert calls["decode"] == [7] and sorted(calls["encode"]) == [1, 1, 2, 3]  # qualities 30, 95, 70×2, 50×3
    for i, (q, (h, w)) in enumerate(zip(qualities, sizes)):
        ref = u8[i, :, :h, :w] if q is None else dec(enc(u8[i, :, :h, :w].contiguous(), quality=q))
        assert torch.equal(out[i, :, :h, :w], ref)
    # the encoded bytes of a device batch come to the host in one copy, split per image
    parts = [torch.arange(n, dtype=torch.uint8) for n in (5, 1, 9)]
    assert [torch.equal(a, b) for a, b in zip(g._bytes_to_host(parts), parts)] == [True] * 3
    # a whole degradation: one decode call per stage that has JPEG
    calls["decode"].clear()
    ps = _draws(np.random.default_rng(8), 4, (128, 128))
    degrade_batch_gpu(_batch(imgs128), ps)
    jfirst = [p.final.order is FinalOrder.JPEG_RESIZE_SINC for p in ps]
    stages = (any(p.first.jpeg_quality is not None for p in ps) + any(p.second.jpeg_quality is not None for p in ps)
              + any(jfirst) + (not all(jfirst)))
    assert len(calls["decode"]) == stages
