"""Per-sample blur of a ragged batch: reflect-101 borders (``cv2.filter2D``), grouped ``conv2d`` or FFT.

Each sample is reflect-padded by a per-sample index gather (exact for any size, down to 1 pixel, as OpenCV),
then correlated with its kernel zero-padded to the batch's largest kernel (zero taps add nothing): either a
grouped ``conv2d`` (one group per sample and channel) or an FFT (``rfft2`` · conj(kernel spectrum), no
wrap-around inside the valid region). :data:`FFT_MIN_KERNEL` picks between them (see :func:`blur_method`).
Host work per call: one upload (the gather indices, the sizes and the kernels or their parameter table).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError, ShapeError
from ..params import KernelParams
from . import _common
from .kernels import _table, build_kernels

__all__ = ["blur_batch", "blur_method", "FFT_MIN_KERNEL", "BLUR_METHODS", "FFT_BUCKET"]

#: ``blur=`` choices of :func:`~rawsynth.degrade.gpu.degrade_batch_gpu`: ``auto`` applies :func:`blur_method`.
BLUR_METHODS = ("auto", "conv", "fft")
#: Kernel side from which ``blur="auto"`` uses the FFT (measured on the CPU, see :func:`blur_method`).
FFT_MIN_KERNEL = 17
#: FFT lengths are rounded up to a multiple of this before the fast-length search, so batches of different
#: canvas sizes share a few cuFFT plans (cuFFT builds a plan per new size).
FFT_BUCKET = 32


def _reflect101(n_out: int, pad: int, n) -> np.ndarray:
    """Source index of padded positions ``-pad .. n_out + pad - 1`` in a length-``n`` signal, reflect-101
    (``cv2.BORDER_REFLECT_101``: ``dcb|abcd|cba``, repeated for pads longer than the signal; 0 if ``n == 1``).
    Positions at or beyond ``n + pad`` (padding of other, larger samples) map to valid but unused indices.
    ``n`` may be an array of lengths (one row of indices per length)."""
    j = np.arange(-pad, n_out + pad)
    n = np.asarray(n, dtype=np.int64)[..., None]
    period = np.maximum(2 * (n - 1), 1)
    m = np.mod(j, period)
    return np.where(n == 1, 0, np.where(m < n, m, period - m))


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


def fft_len(n: int) -> int:
    """The FFT length used for a padded side ``n``: ``n`` rounded up to :data:`FFT_BUCKET`, then to a fast
    length (any length ``>= n`` avoids wrap-around in the valid region)."""
    return _fast_len(-(-n // FFT_BUCKET) * FFT_BUCKET)


def blur_method(kernel_size: int) -> str:
    """``"fft"`` for kernels of side ``>= FFT_MIN_KERNEL`` (17), else ``"conv"``.

    Measured with ``python -m benchmarks.perf.gpu_synthesis --blur-sweep`` on the CPU (2 loaded cores, one
    thread, batch 4): a grouped ``conv2d`` costs ∝ k² per pixel, the FFT about the same for every k; the
    convolution won up to 15×15 and the FFT from 17×17 at 512² (from 15–17 at 128²). The CUDA crossover is
    printed by the same script on a GPU (not measured yet).
    """
    return "fft" if kernel_size >= FFT_MIN_KERNEL else "conv"


def _valid_mask(hw: torch.Tensor, hm: int, wm: int) -> torch.Tensor:
    """``(n, 1, hm, wm)`` float32 mask of each sample's ``h_i × w_i`` corner, from a device ``(n, 2)`` table."""
    rows = torch.arange(hm, device=hw.device)[None, :] < hw[:, :1]
    cols = torch.arange(wm, device=hw.device)[None, :] < hw[:, 1:]
    return (rows[:, :, None] & cols[:, None, :])[:, None].to(torch.float32)


def blur_batch(data: torch.Tensor, sizes: Sequence[tuple[int, int]],
               kernels: Sequence[np.ndarray | KernelParams | None], method: str = "auto") -> torch.Tensor:
    """Correlate each sample of a ragged batch with its own kernel, reflect-101 borders (``cv2.filter2D``).

    Args:
        data: ``(B, C, H_max, W_max)`` float32; sample ``i`` is ``data[i, :, :h_i, :w_i]``, zeros elsewhere.
        sizes: ``(h_i, w_i)`` per sample.
        kernels: per sample an odd square float kernel (any size; applied centred, by correlation), the
            :class:`~rawsynth.degrade.KernelParams` of one (built on the device with the others,
            :func:`~rawsynth.degrade.gpu.kernels.build_kernels`), or ``None`` to leave the sample as it is.
            Arrays and parameters cannot be mixed in one call.
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
    ks = [kernels[i] for i in todo]
    by_params = isinstance(ks[0], KernelParams)
    if any(isinstance(k, KernelParams) != by_params for k in ks):
        raise ConfigError("blur kernels must be all arrays or all KernelParams in one call")
    if not by_params:
        ks = [np.asarray(k, dtype=np.float32) for k in ks]
        for k in ks:
            if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
                raise ShapeError(f"blur kernels must be odd square 2-D arrays, got shape {k.shape}")
    size = max(k.size if by_params else k.shape[0] for k in ks)
    r = size // 2
    if method == "auto":
        method = blur_method(size)
    dev = data.device
    b, c, hm, wm = data.shape
    sub = [sizes[i] for i in todo]
    n = len(todo)
    sh, sw = max(h for h, _ in sub), max(w for _, w in sub)
    host = [np.array(todo, dtype=np.int64), np.array(sub, dtype=np.int64),
            _reflect101(sh, r, [h for h, _ in sub]), _reflect101(sw, r, [w for _, w in sub])]
    if by_params:
        host.append(_table(ks))
    else:
        kt = np.zeros((n, size, size), dtype=np.float32)
        for j, k in enumerate(ks):
            p = (size - k.shape[0]) // 2
            kt[j, p:p + k.shape[0], p:p + k.shape[0]] = k
        host.append(kt)
    ids, hw, ri, ci, kt = _common.upload(host, dev)  # one host-to-device copy for the whole call
    if by_params:
        kt = build_kernels(ks, dev, size, table=kt)
    x = data[:, :, :sh, :sw] if n == b else data.index_select(0, ids)[:, :, :sh, :sw]
    # reflect-101 padding per sample by two gathers (rows, then columns)
    xp = torch.gather(x, 2, ri[:, None, :, None].expand(n, c, sh + 2 * r, sw))
    xp = torch.gather(xp, 3, ci[:, None, None, :].expand(n, c, sh + 2 * r, sw + 2 * r))
    with _common.true_fp32():
        if method == "conv":
            w = kt[:, None].repeat_interleave(c, dim=0)  # (n·C, 1, k, k)
            y = F.conv2d(xp.reshape(1, n * c, sh + 2 * r, sw + 2 * r), w, groups=n * c).view(n, c, sh, sw)
        elif method == "fft":
            hp, wp = fft_len(sh + 2 * r), fft_len(sw + 2 * r)
            kf = torch.fft.rfft2(kt, s=(hp, wp))  # kernel at the top-left corner, zero-padded
            y = torch.fft.irfft2(torch.fft.rfft2(xp, s=(hp, wp)) * kf.conj()[:, None], s=(hp, wp))[..., :sh, :sw]
        else:  # pragma: no cover - checked above
            raise AssertionError(method)
    y = y * _valid_mask(hw, sh, sw)
    out = data.clone()
    if n == b:
        out[:, :, :sh, :sw] = y
    else:
        out[:, :, :sh, :sw].index_copy_(0, ids, y)  # in place, through the view
    return out
