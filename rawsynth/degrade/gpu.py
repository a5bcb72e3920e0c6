"""The detail degradation for a whole batch on the GPU (or CPU), every sample with its own parameters.

:func:`degrade_batch_gpu` runs the chain of :func:`~rawsynth.degrade.apply_degradation` — blur, resize,
8-bit rounding and JPEG in Real-ESRGAN's order — on a ``(B, 3, H, W)`` tensor without leaving its device.
After the first resize every sample has its own size, so the batch travels as a *ragged batch*: one
zero-filled ``(B, 3, H_max, W_max)`` canvas holding sample ``i`` in its top-left ``h_i × w_i`` corner.

* **blur** (per-sample kernel, reflect-101 borders as ``cv2.filter2D``): each sample is reflect-padded by a
  per-sample index gather (exact for any size, down to 1 pixel, as OpenCV), then correlated with its kernel
  zero-padded to the batch's largest kernel (zero taps add nothing): either a grouped ``conv2d`` (one group
  per sample and channel) or an FFT (``rfft2`` · conj(kernel spectrum), no wrap-around inside the valid
  region). :data:`FFT_MIN_KERNEL` picks between them (see :func:`blur_method`).
* **resize** (``F.interpolate`` semantics, ``align_corners=False``, no antialias): bilinear and bicubic are
  separable, so each sample's resize is ``R_y · X · R_xᵀ`` with ``R`` the 1-D interpolation matrices; the
  batch runs as two batched matmuls of zero-padded matrices. The weights are computed here the way ATen
  computes them (the tests compare them with ``F.interpolate`` of identity matrices). ``area`` (adaptive
  average pooling) runs ATen's own pooling per sample: its 2–3-pixel windows turn 8-bit values into exact
  half levels, which only the same summation rounds the same way.
* **8-bit rounding**: ``clamp(round(255·x), 0, 255)`` (round half to even) where the CPU chain rounds.
* **JPEG**: ``torchvision.io.encode_jpeg``/``decode_jpeg``. On CUDA tensors they run nvJPEG on the GPU
  (``jpeg="nvjpeg"``); on CPU tensors torchvision's libjpeg-turbo, which gives byte-identical files to the
  OpenCV encoder of the CPU chain at the same quality (4:2:0 chroma). torchvision's nvJPEG encoder writes
  4:4:4 chroma (no subsampling), so on CUDA the JPEG artefacts differ in chroma from the shards' recipe;
  ``jpeg="libjpeg"`` on CUDA tensors runs the recipe's exact codec on the host instead (copying the 8-bit
  images there and back).

Matmuls, convolutions and FFTs run in true float32 (TF32 is switched off for the call), so on the CPU the
result differs from :func:`~rawsynth.degrade.apply_degradation` only where float rounding flips an 8-bit
rounding (the tests bound it).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_bchw, per_sample
from ..errors import ConfigError, ShapeError
from .config import FinalOrder, ResizeMode
from .blur_kernels import build_kernel
from .params import DegradationParams, KernelParams, StageParams

__all__ = ["degrade_batch_gpu", "blur_batch", "resize_batch", "resize_weights", "blur_method", "FFT_MIN_KERNEL",
           "BLUR_METHODS", "JPEG_CODECS"]

#: ``blur=`` choices of :func:`degrade_batch_gpu`: ``auto`` applies :func:`blur_method`.
BLUR_METHODS = ("auto", "conv", "fft")
#: ``jpeg=`` choices: ``auto`` is ``nvjpeg`` on CUDA tensors and ``libjpeg`` on CPU tensors.
JPEG_CODECS = ("auto", "nvjpeg", "libjpeg")
#: Kernel side from which ``blur="auto"`` uses the FFT (measured on the CPU, see :func:`blur_method`).
FFT_MIN_KERNEL = 17


# --------------------------------------------------------------------------------------------- ragged batch


@dataclass
class _Ragged:
    """Sample ``i`` is ``data[i, :, :h_i, :w_i]``; everything else is 0."""

    data: torch.Tensor  # (B, C, H_max, W_max) float32
    sizes: list[tuple[int, int]]


def _valid_mask(sizes, hm: int, wm: int, device) -> torch.Tensor:
    h = torch.tensor([s[0] for s in sizes], device=device)
    w = torch.tensor([s[1] for s in sizes], device=device)
    rows = torch.arange(hm, device=device)[None, :] < h[:, None]
    cols = torch.arange(wm, device=device)[None, :] < w[:, None]
    return (rows[:, :, None] & cols[:, None, :])[:, None].to(torch.float32)


def _precision_knobs() -> list[tuple[object, str, object]]:
    """``(namespace, attribute, value for true float32)`` of the TF32 switches of this torch.

    torch >= 2.9 has the ``fp32_precision`` API (``"ieee"`` / ``"tf32"`` / ``"none"``, per backend and per
    operation) and raises when a program mixes it with the legacy ``allow_tf32`` flags, so the new API is used
    wherever it exists and the legacy flags only on older torch."""
    mm, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(mm, "fp32_precision"):
        knobs = [(mm, "fp32_precision", "ieee")]
        if conv is not None and hasattr(conv, "fp32_precision"):
            knobs.append((conv, "fp32_precision", "ieee"))
        return knobs
    return [(mm, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def _true_fp32():
    """No TF32 in matmuls and cuDNN convolutions (a 10-bit mantissa would flip 8-bit roundings); the previous
    settings are restored after."""
    knobs = _precision_knobs()
    before = [getattr(ns, attr) for ns, attr, _ in knobs]
    try:
        for ns, attr, value in knobs:
            setattr(ns, attr, value)
        yield
    finally:
        for (ns, attr, _), old in zip(knobs, before):
            setattr(ns, attr, old)


# ----------------------------------------------------------------------------------------------------- blur


def _reflect101(n_out: int, pad: int, n: int) -> np.ndarray:
    """Source index of padded positions ``-pad .. n_out + pad - 1`` in a length-``n`` signal, reflect-101
    (``cv2.BORDER_REFLECT_101``: ``dcb|abcd|cba``, repeated for pads longer than the signal; 0 if ``n == 1``).
    Positions at or beyond ``n + pad`` (padding of other, larger samples) map to valid but unused indices."""
    j = np.arange(-pad, n_out + pad)
    if n == 1:
        return np.zeros_like(j)
    period = 2 * (n - 1)
    m = np.mod(j, period)
    return np.where(m < n, m, period - m)


@functools.lru_cache(maxsize=4096)
def _kernel(kp: KernelParams) -> np.ndarray:
    k = build_kernel(kp, pad_to=None)
    k.setflags(write=False)
    return k


@functools.lru_cache(maxsize=1024)
def _fast_len(n: int) -> int:
    """The smallest ``2^a·3^b·5^c·7^d >= n`` (a fast size for pocketfft and cuFFT)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def blur_method(kernel_size: int) -> str:
    """``"fft"`` for kernels of side ``>= FFT_MIN_KERNEL`` (17), else ``"conv"``.

    Measured with ``python -m benchmarks.perf.gpu_synthesis --blur-sweep`` on the CPU (2 loaded cores, one
    thread, batch 4): a grouped ``conv2d`` costs ∝ k² per pixel, the FFT about the same for every k; the
    convolution won up to 15×15 and the FFT from 17×17 at 512² (from 15–17 at 128²). The CUDA crossover is
    printed by the same script on a GPU (not measured yet).
    """
    return "fft" if kernel_size >= FFT_MIN_KERNEL else "conv"


def blur_batch(data: torch.Tensor, sizes: Sequence[tuple[int, int]], kernels: Sequence[np.ndarray | None],
               method: str = "auto") -> torch.Tensor:
    """Correlate each sample of a ragged batch with its own kernel, reflect-101 borders (``cv2.filter2D``).

    Args:
        data: ``(B, C, H_max, W_max)`` float32; sample ``i`` is ``data[i, :, :h_i, :w_i]``, zeros elsewhere.
        sizes: ``(h_i, w_i)`` per sample.
        kernels: per sample an odd square float kernel (any size; applied centred, by correlation) or
            ``None`` to leave the sample as it is.
        method: ``"conv"`` (grouped ``conv2d``), ``"fft"`` or ``"auto"`` (:func:`blur_method` of the batch's
            largest kernel).

    Returns:
        A new ``(B, C, H_max, W_max)`` float32 tensor, zeros outside each sample (values may leave ``[0, 1]``:
        sinc kernels have negative lobes).
    """
    if method not in BLUR_METHODS:
        raise ConfigError(f"blur method must be one of {BLUR_METHODS}, got {method!r}")
    todo = [i for i, k in enumerate(kernels) if k is not None]
    if not todo:
        return data
    ks = [np.asarray(kernels[i], dtype=np.float32) for i in todo]
    for k in ks:
        if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
            raise ShapeError(f"blur kernels must be odd square 2-D arrays, got shape {k.shape}")
    size = max(k.shape[0] for k in ks)
    r = size // 2
    if method == "auto":
        method = blur_method(size)
    dev = data.device
    b, c, hm, wm = data.shape
    sub = [sizes[i] for i in todo]
    sh, sw = max(h for h, _ in sub), max(w for _, w in sub)
    x = data[todo, :, :sh, :sw]
    # reflect-101 padding per sample by two gathers (rows, then columns)
    ri = torch.from_numpy(np.stack([_reflect101(sh, r, h) for h, _ in sub])).to(dev)
    ci = torch.from_numpy(np.stack([_reflect101(sw, r, w) for _, w in sub])).to(dev)
    n = len(todo)
    xp = torch.gather(x, 2, ri[:, None, :, None].expand(n, c, sh + 2 * r, sw))
    xp = torch.gather(xp, 3, ci[:, None, None, :].expand(n, c, sh + 2 * r, sw + 2 * r))
    kt = np.zeros((n, size, size), dtype=np.float32)
    for j, k in enumerate(ks):
        p = (size - k.shape[0]) // 2
        kt[j, p:p + k.shape[0], p:p + k.shape[0]] = k
    kt = torch.from_numpy(kt).to(dev)
    with _true_fp32():
        if method == "conv":
            w = kt[:, None].repeat_interleave(c, dim=0)  # (n·C, 1, k, k)
            y = F.conv2d(xp.reshape(1, n * c, sh + 2 * r, sw + 2 * r), w, groups=n * c).view(n, c, sh, sw)
        elif method == "fft":
            # any length >= the padded size avoids wrap-around in the valid region: take one FFTs are fast at
            hp, wp = _fast_len(sh + 2 * r), _fast_len(sw + 2 * r)
            kf = torch.fft.rfft2(kt, s=(hp, wp))  # kernel at the top-left corner, zero-padded
            y = torch.fft.irfft2(torch.fft.rfft2(xp, s=(hp, wp)) * kf.conj()[:, None], s=(hp, wp))[..., :sh, :sw]
        else:  # pragma: no cover - checked above
            raise AssertionError(method)
    out = data.clone()
    out[todo, :, :sh, :sw] = y * _valid_mask(sub, sh, sw, dev)
    return out


# --------------------------------------------------------------------------------------------------- resize


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """ATen's bicubic convolution weights for taps ``-1, 0, 1, 2`` at fraction ``t`` (``(n, 4)``)."""

    def c1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def c2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([c2(t + 1), c1(t), c1(1 - t), c2(2 - t)], axis=1)


@functools.lru_cache(maxsize=8192)
def resize_weights(n_in: int, n_out: int, mode: ResizeMode | str, scale_factor: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """1-D taps of ``F.interpolate`` (``align_corners=False``, no antialias) from ``n_in`` to ``n_out`` samples.

    Args:
        n_in: input length.
        n_out: output length.
        mode: ``bilinear`` (2 taps), ``bicubic`` (4 taps, ``a = -0.75``, clamped indices) or ``area``
            (adaptive average pooling windows ``[⌊i·n_in/n_out⌋, ⌈(i+1)·n_in/n_out⌉)``).
        scale_factor: the factor ``F.interpolate`` was given (its sampling grid uses ``1/f``, not
            ``n_in/n_out``); ``None`` when it was given a size. Ignored by ``area``.

    Returns:
        ``(index, weight)``: ``(n_out, T)`` int64 source indices and float64 weights; output ``i`` is
        ``Σ_t weight[i, t] · x[index[i, t]]``. (Read-only, cached.)
    """
    mode = ResizeMode(mode)
    i = np.arange(n_out, dtype=np.float64)
    if n_in == n_out and (scale_factor is None or scale_factor == 1.0 or mode is not ResizeMode.BICUBIC):
        # same length: ATen copies (bilinear even when given a factor != 1; area's windows are single pixels)
        idx, w = np.arange(n_out)[:, None], np.ones((n_out, 1))
    elif mode is ResizeMode.AREA:
        start = (np.arange(n_out) * n_in) // n_out
        end = ((np.arange(n_out) + 1) * n_in + n_out - 1) // n_out
        t = int((end - start).max())
        idx = start[:, None] + np.arange(t)[None, :]
        w = np.where(idx < end[:, None], 1.0 / (end - start)[:, None], 0.0)
        idx = np.minimum(idx, n_in - 1)
    else:
        scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(n_in / n_out)
        src = (scale * (i + 0.5).astype(np.float32) - np.float32(0.5)).astype(np.float32)
        if mode is ResizeMode.BILINEAR:
            src = np.maximum(src, np.float32(0.0))
            i0 = np.floor(src).astype(np.int64)
            lam = (src - i0.astype(np.float32)).astype(np.float64)
            i1 = i0 + (i0 < n_in - 1)
            idx, w = np.stack([i0, i1], 1), np.stack([1.0 - lam, lam], 1)
        elif mode is ResizeMode.BICUBIC:
            i0 = np.floor(src).astype(np.int64)
            t = (src - i0.astype(np.float32)).astype(np.float64)
            idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
            w = _cubic_weights(t)
        else:  # pragma: no cover - every ResizeMode is handled
            raise AssertionError(mode)
    idx, w = np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(w, dtype=np.float64)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w


def _resize_matrices(specs, n_out_max: int, n_in_max: int, device) -> torch.Tensor:
    """``(B, n_out_max, n_in_max)`` float32 dense interpolation matrices (zero rows/columns as padding)."""
    b = len(specs)
    t = max(resize_weights(*s)[0].shape[1] for s in specs)
    idx = np.zeros((b, n_out_max, t), dtype=np.int64)
    w = np.zeros((b, n_out_max, t), dtype=np.float32)
    for j, s in enumerate(specs):
        si, sw = resize_weights(*s)
        idx[j, :si.shape[0], :si.shape[1]] = si
        w[j, :sw.shape[0], :sw.shape[1]] = sw
    m = torch.zeros((b, n_out_max, n_in_max), dtype=torch.float32, device=device)
    # weights summed on the device in float32, as ATen sums them (duplicate clamped taps add up)
    return m.scatter_add_(2, torch.from_numpy(idx).to(device), torch.from_numpy(w).to(device))


def resize_batch(data: torch.Tensor, sizes: Sequence[tuple[int, int]], out_sizes: Sequence[tuple[int, int]],
                 modes: Sequence[ResizeMode | str], scale_factors: Sequence[float | None] | None = None
                 ) -> torch.Tensor:
    """Resize each sample of a ragged batch to its own size and mode (``F.interpolate`` maths).

    Args:
        data: ``(B, C, H_max, W_max)`` float32 ragged batch (sample ``i`` in ``[:h_i, :w_i]``, zeros elsewhere).
        sizes: ``(h_i, w_i)``.
        out_sizes: ``(h'_i, w'_i)``.
        modes: per-sample :class:`~rawsynth.degrade.ResizeMode`.
        scale_factors: per sample the factor given to ``F.interpolate`` (its grid uses it), or ``None`` for
            a resize by size (the default for every sample).

    Returns:
        ``(B, C, max h', max w')`` float32 ragged batch.
    """
    b = data.shape[0]
    scale_factors = [None] * b if scale_factors is None else list(scale_factors)
    modes = [ResizeMode(m) for m in modes]
    hm, wm = max(h for h, _ in out_sizes), max(w for _, w in out_sizes)
    specs = [(h, oh, m, f) for (h, _), (oh, _), m, f in zip(sizes, out_sizes, modes, scale_factors)]
    specs += [(w, ow, m, f) for (_, w), (_, ow), m, f in zip(sizes, out_sizes, modes, scale_factors)]
    if all(s[0] == s[1] and resize_weights(*s)[0].shape[1] == 1 for s in specs):
        return data  # every sample keeps its size and F.interpolate would copy it
    out = torch.zeros((b, data.shape[1], hm, wm), dtype=data.dtype, device=data.device)
    area = [i for i, m in enumerate(modes) if m is ResizeMode.AREA]
    for i in area:
        # adaptive average pooling, ATen's own: its windows average 2-3 values of an 8-bit image to exact
        # half levels, and only the same summation rounds those ties the same way
        (h, w), (oh, ow) = sizes[i], out_sizes[i]
        out[i, :, :oh, :ow] = F.adaptive_avg_pool2d(data[i:i + 1, :, :h, :w], (oh, ow))[0]
    rest = [i for i in range(b) if modes[i] is not ResizeMode.AREA]
    if not rest:
        return out
    sub = data[rest] if len(rest) < b else data
    ry = _resize_matrices([specs[i] for i in rest], hm, data.shape[2], data.device)
    rx = _resize_matrices([specs[b + i] for i in rest], wm, data.shape[3], data.device)
    with _true_fp32():
        # (B,1,h',H)·(B,C,H,W) then ·(B,1,W,w'); cheaper order first
        if hm * data.shape[3] <= data.shape[2] * wm:
            y = torch.matmul(torch.matmul(ry[:, None], sub), rx.transpose(1, 2)[:, None])
        else:
            y = torch.matmul(ry[:, None], torch.matmul(sub, rx.transpose(1, 2)[:, None]))
    if len(rest) == b:
        return y.contiguous()
    out[rest] = y
    return out


# ----------------------------------------------------------------------------------------- rounding, JPEG


def _quantize(data: torch.Tensor) -> torch.Tensor:
    """Real-ESRGAN's ``clamp(round(x·255), 0, 255)`` (round half to even) as uint8."""
    return (data * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def _to_float(u8: torch.Tensor) -> torch.Tensor:
    return u8.to(torch.float32) / 255.0


def _resolve_codec(jpeg: str, device: torch.device) -> str:
    if jpeg not in JPEG_CODECS:
        raise ConfigError(f"jpeg codec must be one of {JPEG_CODECS}, got {jpeg!r}")
    if jpeg == "auto":
        return "nvjpeg" if device.type == "cuda" else "libjpeg"
    if jpeg == "nvjpeg" and device.type != "cuda":
        raise ConfigError(f"jpeg='nvjpeg' needs CUDA tensors, got a tensor on {device}; use jpeg='auto' or "
                          "'libjpeg'")
    return jpeg


def _bytes_to_host(data: list[torch.Tensor]) -> list[torch.Tensor]:
    """Encoded JPEG byte tensors (on any device) as CPU tensors with ONE device-to-host copy (concatenated on
    the device, copied, split on the host) instead of one ``.cpu()`` per image."""
    if not data or all(d.device.type == "cpu" for d in data):
        return data
    lengths = [int(d.numel()) for d in data]
    return list(torch.cat([d.reshape(-1) for d in data]).cpu().split(lengths))


def _jpeg_u8(u8: torch.Tensor, sizes, qualities: Sequence[int | None], codec: str) -> torch.Tensor:
    """JPEG round trip of the samples with a quality (``None``: unchanged), on a uint8 ragged batch.

    Host-side calls per stage: one ``encode_jpeg`` call per distinct quality (torchvision's batched encoder
    takes one quality per call), one device-to-host copy of all the encoded bytes (nvJPEG) and ONE batched
    ``decode_jpeg`` call for the whole stage. Per image the bytes are those of a single-image round trip."""
    from torchvision.io import decode_jpeg, encode_jpeg

    todo = [i for i, q in enumerate(qualities) if q is not None]
    if not todo:
        return u8
    out = u8.clone()
    dev = u8.device
    if codec not in ("nvjpeg", "libjpeg"):  # pragma: no cover - resolved before
        raise AssertionError(codec)
    src = u8 if codec == "nvjpeg" or dev.type == "cpu" else u8.cpu()
    by_q: dict[int, list[int]] = {}
    for i in todo:
        by_q.setdefault(int(qualities[i]), []).append(i)
    encoded: dict[int, torch.Tensor] = {}
    with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its codecs in favour of torchcodec
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        for q, ids in by_q.items():
            imgs = [src[i, :, :sizes[i][0], :sizes[i][1]].contiguous() for i in ids]
            encoded.update(zip(ids, encode_jpeg(imgs, quality=q)))
        data = _bytes_to_host([encoded[i] for i in todo])
        decoded = decode_jpeg(data, device=dev if codec == "nvjpeg" else "cpu")
    for i, d in zip(todo, decoded):
        out[i, :, :sizes[i][0], :sizes[i][1]] = d.to(dev, non_blocking=True)
    return out


# ---------------------------------------------------------------------------------------------------- chain


def _check(x, params) -> list[DegradationParams]:
    check_bchw(x, "x", channels=3)
    b = x.shape[0]
    if b == 0:
        raise ShapeError("x is an empty batch")
    plist = per_sample(list(params) if isinstance(params, (list, tuple)) else params, b, "params")
    for i, p in enumerate(plist):
        if not isinstance(p, DegradationParams):
            raise TypeError(f"params[{i}] must be a DegradationParams, got {type(p).__name__}")
    h, w = x.shape[-2:]
    for i, p in enumerate(plist):
        if h % p.scale or w % p.scale:
            raise ShapeError(f"x size {(h, w)} must be a multiple of scale {p.scale}; crop it first")
        if p.in_size != (h, w):
            raise ShapeError(f"x size {(h, w)} does not match params[{i}].in_size {p.in_size}; draw params for "
                             "this size with sample_degradation(rng, cfg, (H, W))")
    sizes = {p.out_size for p in plist}
    if len(sizes) > 1:
        raise ShapeError(f"params give different output sizes {sorted(sizes)}; they cannot be stacked")
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (lo >= 0.0 and hi <= 1.0):
        raise ShapeError(f"x values must be finite and in [0, 1], got [{lo}, {hi}]")
    return plist


def _stage(r: _Ragged, stages: list[StageParams], by_factor: bool, blur: str, codec: str) -> _Ragged:
    data = blur_batch(r.data, r.sizes, [None if s.kernel is None else _kernel(s.kernel) for s in stages], blur)
    out_sizes = [s.resize_size for s in stages]
    factors = [s.resize_scale if by_factor else None for s in stages]
    data = resize_batch(data, r.sizes, out_sizes, [s.resize_mode for s in stages], factors)
    r = _Ragged(data, out_sizes)
    qualities = [s.jpeg_quality for s in stages]
    if any(q is not None for q in qualities):
        keep = [q is None for q in qualities]
        u8 = _jpeg_u8(_quantize(r.data), r.sizes, qualities, codec)
        jp = _to_float(u8)
        if any(keep):  # samples without JPEG keep their float values (no rounding)
            k = torch.tensor(keep, device=jp.device)[:, None, None, None]
            jp = torch.where(k, r.data, jp)
        r = _Ragged(jp, r.sizes)
    return r


def degrade_batch_gpu(x: torch.Tensor, params: DegradationParams | Sequence[DegradationParams], *,
                      blur: str = "auto", jpeg: str = "auto", as_uint8: bool = False) -> torch.Tensor:
    """:func:`~rawsynth.degrade.apply_degradation` for a batch on its device, per-sample parameters.

    The same chain: first order (blur → resize by factor → round → JPEG), second order (blur if drawn →
    resize), final step in each sample's order (``[resize → sinc] → round → JPEG`` or
    ``round → JPEG → [resize → sinc] → round``), then the resize back and a last rounding. Not differentiable.

    Args:
        x: ``(B, 3, H, W)`` float sRGB in ``[0, 1]``, any device (CUDA, or CPU for testing).
        params: one :class:`~rawsynth.degrade.DegradationParams` per sample (or one for all), all drawn for
            ``(H, W)`` and giving the same ``out_size``.
        blur: ``"auto"``, ``"conv"`` or ``"fft"`` (see :func:`blur_batch`; both give the same result to
            float rounding).
        jpeg: ``"auto"`` (nvJPEG on CUDA, libjpeg on CPU), ``"nvjpeg"`` or ``"libjpeg"`` (the CPU chain's codec,
            run on the host also for CUDA tensors).
        as_uint8: return the 8-bit levels ``k`` as uint8 instead of ``k / 255``.

    Returns:
        ``(B, 3, h, w)`` on ``x``'s device: ``x``'s dtype with values exactly ``k / 255`` (or uint8 ``k``),
        ``(h, w) = params.out_size``.

    Raises:
        ShapeError: ``x`` not ``(B, 3, H, W)`` float in ``[0, 1]``, wrong batch or image size for the params,
            or params with different output sizes.
        TypeError: a params entry is not a ``DegradationParams``.
        ConfigError: unknown ``blur``/``jpeg`` choice, or ``nvjpeg`` for a CPU tensor.
    """
    plist = _check(x, params)
    if blur not in BLUR_METHODS:
        raise ConfigError(f"blur must be one of {BLUR_METHODS}, got {blur!r}")
    codec = _resolve_codec(jpeg, x.device)
    b, _, h, w = x.shape
    with torch.no_grad():
        r = _Ragged(x.detach().to(torch.float32).contiguous(), [(h, w)] * b)
        r = _stage(r, [p.first for p in plist], True, blur, codec)
        r = _stage(r, [p.second for p in plist], False, blur, codec)
        # final step, mixed orders: JPEG-first samples get their JPEG, then everybody resizes + sinc, then
        # resize-first samples get their JPEG and JPEG-first samples only the rounding
        jfirst = [p.final.order is FinalOrder.JPEG_RESIZE_SINC for p in plist]
        if any(jfirst):
            u8 = _jpeg_u8(_quantize(r.data), r.sizes, [p.final.jpeg_quality if j else None
                                                       for p, j in zip(plist, jfirst)], codec)
            k = torch.tensor(jfirst, device=x.device)[:, None, None, None]
            r = _Ragged(torch.where(k, _to_float(u8), r.data), r.sizes)
        lq = [p.lq_size for p in plist]
        data = resize_batch(r.data, r.sizes, lq, [p.final.resize_mode for p in plist])
        data = blur_batch(data, lq, [None if p.final.sinc is None else _kernel(p.final.sinc) for p in plist], blur)
        u8 = _jpeg_u8(_quantize(data), lq, [None if j else p.final.jpeg_quality for p, j in zip(plist, jfirst)],
                      codec)
        back = [p for p in plist if p.resize_back]
        if back and len(back) != b:  # pragma: no cover - excluded by the equal out_size check
            raise ShapeError("params mix resize_back true and false")
        if back:
            data = resize_batch(_to_float(u8), lq, [p.in_size for p in plist], [p.resize_back_mode for p in plist])
            u8 = _quantize(data)
        oh, ow = plist[0].out_size
        u8 = u8[:, :, :oh, :ow].contiguous()
    if as_uint8:
        return u8
    return _to_float(u8).to(x.dtype)

