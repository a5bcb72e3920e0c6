"""The reference side of :mod:`benchmarks.perf.synthesis`: pairs made the way OSEDiff-style loaders make them today.

One sample at a time: ``cv2.imread``, random crop, Real-ESRGAN's dataset kernels (basicsr
``random_mixed_kernels``/``circular_lowpass_kernel`` on numpy's global RNG, 21×21, pulse when the final sinc is
off), Real-ESRGAN's ``feed_data`` chain without noise (basicsr ``filter2D``, ``F.interpolate``, basicsr
``DiffJPEG`` on the CPU), rounding to 8 bits, ``F.interpolate`` back to ``crop``, Brooks' unprocess of HQ and LQ
in plain dense torch, a sliced mosaic, heteroscedastic noise and quantisation (none of rawsynth's fast paths, so
library speed-ups do not leak into the reference), then ``raw.png``/``hq.png``/``meta.json`` (OpenCV's default
PNG settings) into a tar written with :mod:`tarfile`. Split out of :mod:`benchmarks.perf.synthesis`, which
re-exports these names.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rawsynth.pipeline import SynthConfig
from rawsynth.sources import Source

__all__ = ["REFERENCE_STAGES", "run_reference"]

REFERENCE_STAGES = ("decode", "crop", "kernels (basicsr, global RNG)", "degradation (filter2D/interpolate/DiffJPEG)",
                    "ISP/noise sampling", "IPTP (unprocess)", "MNS", "encode PNGs", "tar write")


class _Reference:
    """Real-ESRGAN's dataset + ``RealESRNetModel.feed_data`` (noise removed) and a plain torch unprocess/MNS."""

    def __init__(self, cfg: SynthConfig):
        from rawsynth.compat.basicsr import DiffJPEG, degradations

        self.cfg = cfg
        self.deg = degradations()
        self.jpeger = DiffJPEG(differentiable=False)
        pulse = np.zeros((21, 21), np.float32)
        pulse[10, 10] = 1
        self.pulse = torch.from_numpy(pulse)
        self.profile = cfg.profile()

    def _kernel(self, kc) -> np.ndarray:
        # RealESRGANDataset.__getitem__: random.choice of the size, sinc coin on numpy's global RNG, else
        # random_mixed_kernels; zero-padded to 21
        size = random.choice(kc.sizes)
        if np.random.uniform() < kc.sinc_prob:
            lo, hi = kc.sinc_omega_range if size < kc.sinc_large_size else kc.sinc_omega_range_large
            k = self.deg.circular_lowpass_kernel(np.random.uniform(lo, hi), size, pad_to=False)
        else:
            k = self.deg.random_mixed_kernels([t.value for t in kc.kernel_list], list(kc.kernel_prob), size,
                                              list(kc.sigma_range), list(kc.sigma_range), list(kc.rotation_range),
                                              list(kc.betag_range), list(kc.betap_range), noise_range=None)
        p = (21 - size) // 2
        return np.pad(k, ((p, p), (p, p)))

    def _kernels(self):
        d = self.cfg.degradation
        k1 = torch.FloatTensor(self._kernel(d.first.kernel))
        k2 = torch.FloatTensor(self._kernel(d.second.kernel))
        if np.random.uniform() < d.final.sinc_prob:
            size = random.choice(d.final.sinc_sizes)
            sinc = torch.FloatTensor(self.deg.circular_lowpass_kernel(np.random.uniform(*d.final.sinc_omega_range),
                                                                      size, pad_to=21))
        else:
            sinc = self.pulse
        return k1[None], k2[None], sinc[None]

    def _resize(self, x, sc, size_of):
        updown = random.choices(["up", "down", "keep"], sc.resize_prob)[0]
        if updown == "up":
            scale = np.random.uniform(1, sc.resize_range[1])
        elif updown == "down":
            scale = np.random.uniform(sc.resize_range[0], 1)
        else:
            scale = 1
        mode = random.choice([m.value for m in sc.resize_modes])
        return size_of(x, scale, mode)

    def _jpeg(self, x, jpeg_range, gen):
        # Real-ESRGAN: jpeg_p = out.new_zeros(b).uniform_(*jpeg_range); out = jpeger(clamp(out, 0, 1), jpeg_p)
        q = x.new_zeros(x.size(0)).uniform_(*jpeg_range, generator=gen)
        return self.jpeger(torch.clamp(x, 0, 1), quality=q)

    def degrade(self, gt: torch.Tensor, kernels, gen: torch.Generator) -> torch.Tensor:
        from rawsynth.compat.basicsr import filter2D

        d = self.cfg.degradation
        k1, k2, sinc = kernels
        ori_h, ori_w = gt.shape[2:4]
        s = d.scale
        # first order
        out = filter2D(gt, k1)
        out = self._resize(out, d.first, lambda x, f, m: F.interpolate(x, scale_factor=f, mode=m))
        out = self._jpeg(out, d.first.jpeg_range, gen)
        # second order
        if np.random.uniform() < d.second.blur_prob:
            out = filter2D(out, k2)
        out = self._resize(out, d.second, lambda x, f, m: F.interpolate(
            x, size=(int(ori_h / s * f), int(ori_w / s * f)), mode=m))
        # final: [resize + sinc] → JPEG, or JPEG → [resize + sinc]
        modes = [m.value for m in d.final.resize_modes]
        if np.random.uniform() < d.final.resize_first_prob:
            out = F.interpolate(out, size=(ori_h // s, ori_w // s), mode=random.choice(modes))
            out = filter2D(out, sinc)
            out = self._jpeg(out, d.final.jpeg_range, gen)
        else:
            out = self._jpeg(out, d.final.jpeg_range, gen)
            out = F.interpolate(out, size=(ori_h // s, ori_w // s), mode=random.choice(modes))
            out = filter2D(out, sinc)
        lq = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
        # resize back to the HQ size (RDDM pairs share the size) and round again
        lq = F.interpolate(lq, size=(ori_h, ori_w), mode=d.resize_back_mode.value)
        return torch.clamp((lq * 255.0).round(), 0, 255) / 255.0


def _seed_of(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) % (2**32)


def _png(a: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", a)  # OpenCV's default PNG settings, as a straightforward loader writes them
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _plain_unprocess(x: torch.Tensor, isp) -> torch.Tensor:
    """Brooks et al.'s unprocess as their code writes it, in plain dense torch (no rawsynth fast paths)."""
    x = x.clamp(0.0, 1.0)
    x = 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)  # inverse smoothstep
    x = x.clamp_min(1e-8) ** 2.2  # inverse gamma
    x = torch.einsum("ij,bjhw->bihw", torch.tensor(isp.rgb2cam, dtype=x.dtype), x)  # inverse CCM
    gains = torch.tensor([1.0 / isp.red_gain, 1.0, 1.0 / isp.blue_gain], dtype=x.dtype).view(1, 3, 1, 1)
    gains = gains / isp.rgb_gain
    gray = x.mean(dim=1, keepdim=True)
    mask = ((gray - 0.9).clamp_min(0.0) / 0.1) ** 2  # highlight-preserving inverse white balance
    return (x * torch.maximum(mask + (1.0 - mask) * gains, gains)).clamp(0.0, 1.0)


def _plain_mns(lin: torch.Tensor, pattern, noise, gen: torch.Generator, sensor) -> np.ndarray:
    """Mosaic by slicing, heteroscedastic Gaussian noise, quantisation to DN: plain dense torch."""
    h, w = lin.shape[-2:]
    m = torch.empty(h, w, dtype=lin.dtype)
    for dy in range(2):
        for dx in range(2):
            m[dy::2, dx::2] = lin[0, pattern.colors[dy][dx], dy::2, dx::2]
    m = m + torch.sqrt((noise.lambda_shot * m + noise.lambda_read).clamp_min(0.0)) * torch.randn(
        m.shape, generator=gen, dtype=m.dtype)
    dn = torch.round(m.double() * (sensor.white_level - sensor.black_level) + sensor.black_level)
    return dn.clamp(0, sensor.white_level).to(torch.int32).numpy().astype(np.uint16)


def run_reference(sources: list[Source], out: Path, crop: int, seed: int, ref: _Reference,
                  seconds: dict[str, float] | None = None) -> dict:
    from rawsynth.isp import sample_isp_params
    from rawsynth.mns import sample_noise_params

    cfg = ref.cfg
    st = seconds if seconds is not None else defaultdict(float)
    out.mkdir(parents=True, exist_ok=True)
    tar_path = out / "reference-000000.tar"
    t0 = time.perf_counter()
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with tarfile.open(tar_path, "w") as tar:
            for i, src in enumerate(sources):
                s = _seed_of(seed, i)
                np.random.seed(s)  # basicsr's samplers draw from the global RNGs; seeded here only
                random.seed(s)
                gen = torch.Generator().manual_seed(s)
                rng = np.random.default_rng(s)
                key = f"{i:07d}_0000"
                t = time.perf_counter()
                img = cv2.imread(src.path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
                t1 = time.perf_counter()
                st["decode"] += t1 - t
                h, w = img.shape[:2]
                top, left = random.randint(0, h - crop), random.randint(0, w - crop)
                img = np.ascontiguousarray(img[top:top + crop, left:left + crop])
                gt = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
                t2 = time.perf_counter()
                st["crop"] += t2 - t1
                kernels = ref._kernels()
                t3 = time.perf_counter()
                st["kernels (basicsr, global RNG)"] += t3 - t2
                with torch.no_grad():
                    lq = ref.degrade(gt, kernels, gen)
                    t4 = time.perf_counter()
                    st["degradation (filter2D/interpolate/DiffJPEG)"] += t4 - t3
                    isp = sample_isp_params(rng, cfg.isp)
                    pattern = cfg.patterns[int(rng.integers(len(cfg.patterns)))]
                    noise = sample_noise_params(rng, ref.profile)
                    t5 = time.perf_counter()
                    st["ISP/noise sampling"] += t5 - t4
                    hq_lin = _plain_unprocess(gt, isp)
                    lq_lin = _plain_unprocess(lq, isp)
                    t6 = time.perf_counter()
                    st["IPTP (unprocess)"] += t6 - t5
                    raw = _plain_mns(lq_lin, pattern, noise, gen, cfg.sensor)
                    t7 = time.perf_counter()
                    st["MNS"] += t7 - t6
                hq16 = np.round(hq_lin[0].permute(1, 2, 0).numpy().astype(np.float64) * 65535).astype(np.uint16)
                fields = {"raw.png": _png(raw), "hq.png": _png(np.ascontiguousarray(hq16[..., ::-1])),
                          "meta.json": json.dumps({"key": key, "pattern": pattern.value, "isp": isp.to_dict(),
                                                   "noise": noise.to_dict(), "sensor": cfg.sensor.to_dict(),
                                                   "crop": [top, left, crop, crop], "source": src.name},
                                                  sort_keys=True).encode()}
                t8 = time.perf_counter()
                st["encode PNGs"] += t8 - t7
                for name, data in fields.items():
                    ti = tarfile.TarInfo(f"{key}.{name}")
                    ti.size = len(data)
                    tar.addfile(ti, io.BytesIO(data))
                st["tar write"] += time.perf_counter() - t8
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "samples": len(sources), "bytes": tar_path.stat().st_size}
