"""The pieces of the batched degradation built for throughput, each against something we did not write:
device-built blur kernels vs basicsr, the tensor JPEG vs PIL's libjpeg, sparse-tap resize vs F.interpolate,
and the host-side work per batch (uploads, device-to-host copies, codec calls) counted by patching."""

import math

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from benchmarks.perf.gpu_jpeg import libjpeg, psnr
from rawsynth.degrade import build_kernel, sample_degradation
from rawsynth.degrade.config import KernelType
from rawsynth.degrade.gpu import (KERNEL_TOL, blur_batch, build_kernels, degrade_batch_gpu, jpeg_tensor,
                                  resize_batch)
from rawsynth.degrade.gpu import _common, tensor_jpeg
from rawsynth.degrade.gpu.blur import fft_len

# measured with `python -m benchmarks.perf.gpu_jpeg` (6 photos, 256², q 10..95): worst 48.9 dB, median 50.4-53.0
TENSOR_JPEG_MIN_PSNR = 47.0


def _kernel_params(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    kps = []
    while len(kps) < n:
        p = sample_degradation(rng, None, (64, 64))
        kps += [k for k in (p.first.kernel, p.second.kernel, p.final.sinc) if k is not None]
    return kps


def test_device_kernels_equal_basicsr():
    """build_kernels (all kinds and sizes in one batched call) = basicsr's constructors: bit for bit for the
    Gaussian families, within KERNEL_TOL for sinc (its Bessel function); zeros around each kernel."""
    kps = _kernel_params(120)
    assert len({kp.kind for kp in kps}) == len(KernelType)
    k = build_kernels(kps, "cpu").numpy()
    assert k.shape == (len(kps), 21, 21) and k.dtype == np.float32
    for kp, got in zip(kps, k):
        ref = build_kernel(kp, pad_to=21)
        err = np.abs(got - ref).max()
        assert err <= (KERNEL_TOL if kp.kind is KernelType.SINC else 0.0), (kp, err)
    # blurring with parameters = blurring with basicsr's arrays
    x = torch.rand(4, 3, 40, 40)
    sizes = [(40, 40), (17, 33), (40, 5), (9, 9)]
    by_params = blur_batch(x, sizes, kps[:4], "conv")
    by_arrays = blur_batch(x, sizes, [build_kernel(kp, pad_to=None) for kp in kps[:4]], "conv")
    assert torch.abs(by_params - by_arrays).max() < 1e-6


def _photos():
    names = ("astronaut", "chelsea", "coffee", "rocket")
    sizes = [(96, 128), (75, 131), (33, 17), (1, 2)]  # ragged, odd, smaller than one MCU
    return [np.ascontiguousarray(getattr(skimage.data, n)()[:h, :w]) for n, (h, w) in zip(names, sizes)]


def test_tensor_jpeg_is_close_to_libjpeg():
    """One batched call, a different quality per image, ragged sizes: each image within the measured bound
    of PIL's libjpeg round trip (the shards' codec), far closer than the JPEG distortion itself; quantisation
    tables identical to the ones libjpeg writes into the file; untouched samples and padding unchanged."""
    from PIL import Image
    import io

    for q in (1, 10, 50, 75, 95, 100):  # the tables libjpeg wrote (PIL reads them back from the file)
        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG", quality=q)
        tabs = Image.open(io.BytesIO(buf.getvalue())).quantization
        np.testing.assert_array_equal(tensor_jpeg.quant_tables(q), np.array([tabs[0], tabs[1]]).reshape(2, 8, 8))
    imgs = _photos()
    sizes = [i.shape[:2] for i in imgs]
    u8 = torch.zeros(5, 3, 96, 131, dtype=torch.uint8)
    for k, i in enumerate(imgs):
        u8[k, :, :i.shape[0], :i.shape[1]] = torch.from_numpy(i).permute(2, 0, 1)
    u8[4] = 7
    qualities = [10, 50, 95, 30, None]
    out = jpeg_tensor(u8, sizes + [(96, 131)], qualities)
    assert out.dtype == torch.uint8 and out.shape == u8.shape and torch.equal(out[4], u8[4])
    for k, (img, q) in enumerate(zip(imgs, qualities)):
        h, w = img.shape[:2]
        ours, ref = out[k, :, :h, :w].permute(1, 2, 0).numpy(), libjpeg(img, q)
        if h * w >= 64:
            assert psnr(ours, ref) > TENSOR_JPEG_MIN_PSNR, (k, q, psnr(ours, ref))
            assert psnr(ours, ref) > psnr(img, ref) + 5
        else:  # a 1x2 image: a value or two may differ by a level
            assert np.abs(ours.astype(int) - ref).max() <= 2
        assert not out[k, :, h:].any() and not out[k, :, :, w:].any()


def _interp(x: np.ndarray, size, mode, factor=None) -> np.ndarray:
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    kw = {} if mode == "area" else {"align_corners": False}
    if factor is None:
        y = F.interpolate(t, size=size, mode=mode, **kw)
    else:
        y = F.interpolate(t, scale_factor=factor, mode=mode, **kw)
    return y[0].permute(1, 2, 0).numpy()


def test_sparse_resize_equals_interpolate():
    """Random ragged batches, mixed modes (area groups included), by size and by factor, up and down: every
    sample equals F.interpolate within 1e-5 and is zero outside its corner."""
    rng = np.random.default_rng(2)
    for trial in range(6):
        b = 6
        ins = [(int(rng.integers(1, 60)), int(rng.integers(1, 60))) for _ in range(b)]
        modes = [("bilinear", "bicubic", "area")[int(rng.integers(0, 3))] for _ in range(b)]
        by_f = trial % 2 == 1
        factors = [float(rng.uniform(0.2, 1.6)) for _ in range(b)] if by_f else [None] * b
        outs = ([(max(math.floor(h * f), 1), max(math.floor(w * f), 1)) for (h, w), f in zip(ins, factors)]
                if by_f else [(int(rng.integers(1, 70)), int(rng.integers(1, 70))) for _ in range(b)])
        if by_f:  # F.interpolate needs the factor to give these sizes; area ignores it
            factors = [None if m == "area" else f for m, f in zip(modes, factors)]
        data = torch.zeros(b, 3, 60, 60)
        imgs = [np.random.default_rng(k).random((h, w, 3), dtype=np.float32) for k, (h, w) in enumerate(ins)]
        for k, i in enumerate(imgs):
            data[k, :, :i.shape[0], :i.shape[1]] = torch.from_numpy(i).permute(2, 0, 1)
        y = resize_batch(data, ins, outs, modes, factors)
        for k, (i, (oh, ow)) in enumerate(zip(imgs, outs)):
            ref = _interp(i, (oh, ow), modes[k], factors[k])
            if ref.shape[:2] != (oh, ow):
                continue  # a factor whose floor disagrees with F.interpolate's own size rule
            np.testing.assert_allclose(y[k, :, :oh, :ow].permute(1, 2, 0).numpy(), ref, atol=1e-5)
            assert not y[k, :, oh:].any() and not y[k, :, :, ow:].any()


def test_fft_lengths_are_bucketed():
    lengths = {fft_len(n) for n in range(100, 600)}
    assert len(lengths) <= 20 and all(fft_len(n) >= n for n in range(1, 600))


class _Count:
    def __init__(self):
        self.n = {}

    def wrap(self, name, fn):
        def spy(*a, **k):
            self.n[name] = self.n.get(name, 0) + 1
            return fn(*a, **k)
        return spy


def _host_work(monkeypatch, b: int, jpeg: str) -> dict:
    """Run one degradation of a batch of ``b`` with every host<->device crossing and host sync counted."""
    import torchvision.io as tio

    c = _Count()
    for name in ("upload", "to_host"):
        monkeypatch.setattr(_common, name, c.wrap(name, getattr(_common, name)))
    import rawsynth.degrade.gpu.jpeg as gj

    monkeypatch.setattr(gj, "jpeg_tensor", c.wrap("jpeg_tensor", tensor_jpeg.jpeg_tensor))
    for name in ("encode_jpeg", "decode_jpeg"):
        monkeypatch.setattr(tio, name, c.wrap(name, getattr(tio, name)))
    for name in ("item", "tolist", "cpu", "__bool__", "__float__", "__int__"):  # syncs on CUDA tensors
        monkeypatch.setattr(torch.Tensor, name, c.wrap("sync:" + name, getattr(torch.Tensor, name)))
    rng = np.random.default_rng(11)
    ps = [sample_degradation(rng, None, (64, 64)) for _ in range(b)]
    x = torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    degrade_batch_gpu(x, ps, jpeg=jpeg)
    monkeypatch.undo()
    return c.n


def test_host_work_per_batch_does_not_grow_with_the_batch(monkeypatch):
    """The tensor-JPEG chain: no Tensor sync method called (item/tolist/cpu/bool/float/int), exactly one
    device-to-host read (the deferred input check), one JPEG call per stage, and at most 12 packed uploads
    (blur, resize, JPEG, merge per stage) — the same for 4 and 16 samples. With libjpeg: one batched decode
    call per stage, one encode call per distinct quality."""
    small, big = _host_work(monkeypatch, 4, "tensor"), _host_work(monkeypatch, 16, "tensor")
    for n in (small, big):
        assert not [k for k in n if k.startswith("sync:")], n
        assert n["to_host"] == 1 and 3 <= n["jpeg_tensor"] <= 4 and "encode_jpeg" not in n
        assert 6 <= n["upload"] <= 12
    assert big["upload"] <= small["upload"] + 2  # per batch, not per sample
    lib = _host_work(monkeypatch, 12, "libjpeg")
    assert lib["decode_jpeg"] <= 4 and lib["encode_jpeg"] <= 4 * 66  # one per stage; per distinct quality


def test_deferred_check_reads_the_flag():
    assert _common.DeferredCheck(torch.tensor(True)).value() is True
    assert _common.DeferredCheck(torch.tensor(False)).value() is False
    a, b = np.arange(5, dtype=np.int64), np.ones((2, 3), np.float32)
    ta, tb = _common.upload([a, b], "cpu")
    assert ta.dtype == torch.int64 and tb.shape == (2, 3) and torch.equal(ta, torch.arange(5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_uploads_and_tensor_jpeg():  # pragma: no cover - needs a GPU
    a, b = np.arange(5, dtype=np.int64), np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    ta, tb = _common.upload([a, b, np.array([True, False])], "cuda")[:2]
    assert torch.equal(ta.cpu(), torch.from_numpy(a)) and torch.equal(tb.cpu(), torch.from_numpy(b))
    assert _common.DeferredCheck(torch.tensor(True, device="cuda")).value() is True
    imgs = _photos()[:3]
    u8 = torch.zeros(3, 3, 96, 131, dtype=torch.uint8)
    for k, i in enumerate(imgs):
        u8[k, :, :i.shape[0], :i.shape[1]] = torch.from_numpy(i).permute(2, 0, 1)
    sizes = [i.shape[:2] for i in imgs]
    cpu = jpeg_tensor(u8, sizes, [10, 50, 95])
    gpu = jpeg_tensor(u8.cuda(), sizes, [10, 50, 95]).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 2


def test_tensor_jpeg_chain_is_close_to_the_cpu_chain():
    """The whole batched chain with the tensor JPEG (the CUDA default), run on the CPU, against the shards' CPU
    chain (libjpeg): measured over 40 draws at 128² (/tmp script, seed 123): worst 40.3 dB, median 45.9 dB."""
    from rawsynth.degrade import apply_degradation

    names = ("astronaut", "chelsea", "coffee", "rocket")
    imgs = [np.ascontiguousarray(getattr(skimage.data, n)()[:128, :128]).astype(np.float32) / 255 for n in names]
    rng = np.random.default_rng(123)
    ps = [sample_degradation(rng, None, (128, 128)) for _ in range(8)]
    x = torch.stack([torch.from_numpy(imgs[i % 4]).permute(2, 0, 1) for i in range(8)])
    out = degrade_batch_gpu(x, ps, jpeg="tensor")
    for i, p in enumerate(ps):
        ref = apply_degradation(imgs[i % 4], p)
        assert psnr(out[i].permute(1, 2, 0).numpy() * 255, ref * 255) > 37.0, p


def test_diffjpeg_backend_is_basicsrs():
    """jpeg="diffjpeg" = basicsr's DiffJPEG itself (the reference library), per image, with its own quality; a
    ragged sample is edge-replicated to a multiple of 16 first; untouched samples stay."""
    from rawsynth.compat.basicsr import DiffJPEG
    from rawsynth.degrade.gpu import jpeg as gj

    imgs = [np.ascontiguousarray(skimage.data.chelsea()[:48, :64]), np.ascontiguousarray(
        skimage.data.coffee()[:37, :50])]
    u8 = torch.zeros(3, 3, 48, 64, dtype=torch.uint8)
    for k, i in enumerate(imgs):
        u8[k, :, :i.shape[0], :i.shape[1]] = torch.from_numpy(i).permute(2, 0, 1)
    out = gj.jpeg_u8(u8, [(48, 64), (37, 50), (48, 64)], [30, 80, None], "diffjpeg")
    assert torch.equal(out[2], u8[2]) and not out[1, :, 37:].any() and not out[1, :, :, 50:].any()
    ref_mod = DiffJPEG(differentiable=False)
    for k, (img, q) in enumerate(zip(imgs, (30, 80))):
        h, w = img.shape[:2]
        x = np.pad(img, ((0, -h % 16), (0, -w % 16), (0, 0)), mode="edge")
        t = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            ref = ref_mod(t, quality=torch.tensor([float(q)]))
        ref = (ref.clamp(0, 1) * 255.0).round().to(torch.uint8)[0, :, :h, :w]
        assert torch.equal(out[k, :, :h, :w], ref)  # batched with mixed qualities = one image at a time
