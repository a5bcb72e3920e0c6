"""Per-sample resize of a ragged batch with ``F.interpolate``'s maths, by sparse taps.

Bilinear and bicubic are separable: output row ``i`` of a sample is ``Σ_t w[i, t] · x[idx[i, t]]`` over 2 or 4
taps (:func:`resize_weights`, computed the way ATen computes them). The batch runs each axis as ``T`` gathers
of the source rows (columns) times their weights, on the batch's canvas: ``T·B·C·H'·W`` multiply-adds per
axis instead of the ``H'·H·W`` of a dense interpolation matrix. ``area`` (adaptive average pooling) runs
ATen's own pooling, one call per group of samples with the same input and output size: its 2–3-pixel
windows turn 8-bit values into exact half levels, which only the same summation rounds the same way.
Host work per call: one upload (tap indices and weights of both axes, the sample ids of each area group).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ResizeMode
from . import _common

__all__ = ["resize_batch", "resize_weights"]


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


def _taps(specs, n_out_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, n_out_max, T)`` int64 indices and float32 weights (zero weights as padding, index 0)."""
    t = max(resize_weights(*s)[0].shape[1] for s in specs)
    idx = np.zeros((len(specs), n_out_max, t), dtype=np.int64)
    w = np.zeros((len(specs), n_out_max, t), dtype=np.float32)
    for j, s in enumerate(specs):
        si, sw = resize_weights(*s)
        idx[j, :si.shape[0], :si.shape[1]] = si
        w[j, :sw.shape[0], :sw.shape[1]] = sw
    return idx, w


def _apply_taps(x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
    """``Σ_t w[:, i, t] · x.select(dim, idx[:, i, t])`` along ``dim`` (2: rows, 3: columns) of ``(B, C, H, W)``."""
    b, c = x.shape[:2]
    n_out, taps = idx.shape[1:]
    out = None
    for t in range(taps):
        if dim == 2:
            i = idx[:, None, :, t, None].expand(b, c, n_out, x.shape[3])
            term = torch.gather(x, 2, i) * w[:, None, :, t, None]
        else:
            i = idx[:, None, None, :, t].expand(b, c, x.shape[2], n_out)
            term = torch.gather(x, 3, i) * w[:, None, None, :, t]
        out = term if out is None else out.add_(term)
    return out


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
        ``(B, C, max h', max w')`` float32 ragged batch (zeros outside each sample). Equal to ``F.interpolate``
        per sample within 1e-5 (bilinear/bicubic: separable sums in another order), identical for ``area``.
    """
    b = data.shape[0]
    scale_factors = [None] * b if scale_factors is None else list(scale_factors)
    modes = [ResizeMode(m) for m in modes]
    hm, wm = max(h for h, _ in out_sizes), max(w for _, w in out_sizes)
    specs = [(h, oh, m, f) for (h, _), (oh, _), m, f in zip(sizes, out_sizes, modes, scale_factors)]
    specs += [(w, ow, m, f) for (_, w), (_, ow), m, f in zip(sizes, out_sizes, modes, scale_factors)]
    if all(s[0] == s[1] and resize_weights(*s)[0].shape[1] == 1 for s in specs):
        return data  # every sample keeps its size and F.interpolate would copy it
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(modes):
        if m is ResizeMode.AREA:
            groups.setdefault((sizes[i], out_sizes[i]), []).append(i)
    rest = [i for i in range(b) if modes[i] is not ResizeMode.AREA]
    host = [np.array(ids, dtype=np.int64) for ids in groups.values()]
    if rest:
        host += [np.array(rest, dtype=np.int64), *_taps([specs[i] for i in rest], hm),
                 *_taps([specs[b + i] for i in rest], wm)]
    dev = _common.upload(host, data.device)  # one host-to-device copy for the whole call
    out = torch.zeros((b, data.shape[1], hm, wm), dtype=data.dtype, device=data.device)
    for ((h, w), (oh, ow)), ids in zip(groups, dev):
        # adaptive average pooling, ATen's own: its windows average 2-3 values of an 8-bit image to exact
        # half levels, and only the same summation rounds those ties the same way
        pooled = F.adaptive_avg_pool2d(data.index_select(0, ids)[:, :, :h, :w], (oh, ow))
        out[:, :, :oh, :ow].index_copy_(0, ids, pooled)  # in place, through the view
    if not rest:
        return out
    rid, iy, wy, ix, wx = dev[len(groups):]
    sub = data if len(rest) == b else data.index_select(0, rid)
    # the cheaper axis first: rows first costs H'·W per channel, columns first H·W'
    if hm * data.shape[3] <= data.shape[2] * wm:
        y = _apply_taps(_apply_taps(sub, iy, wy, 2), ix, wx, 3)
    else:
        y = _apply_taps(_apply_taps(sub, ix, wx, 3), iy, wy, 2)
    if len(rest) == b:
        return y
    return out.index_copy_(0, rid, y)
