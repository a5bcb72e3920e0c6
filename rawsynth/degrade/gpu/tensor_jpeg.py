"""A batched JPEG round trip in tensor maths, per-image quality, modelled on libjpeg (the shards' codec).

Real-ESRGAN trains with a tensor JPEG (basicsr's ``DiffJPEG``) for the same reason as here: a whole batch in
a few device operations, no host round trip, any quality per image. basicsr's model departs from libjpeg in
three places (quality tables scaled without libjpeg's integer rounding and clamping, chroma averaged and
upsampled by repetition, float colour conversion); this one follows libjpeg-turbo's baseline 4:2:0 path
step by step so that it lands next to the shards' libjpeg (OpenCV / PIL) output:

* edge replication of each image to a multiple of 16 (libjpeg's ``expand_right_edge``/bottom rows);
* RGB→YCbCr with libjpeg's 16-bit fixed-point tables (exact integers);
* 4:2:0 chroma by ``h2v2_downsample``: 2×2 sums plus the alternating bias 1, 2, then ``>> 2`` (exact);
* the quality scaling of ``jpeg_set_quality(q, force_baseline=TRUE)``: Annex K tables,
  ``(t·s + 50) // 100`` clamped to ``[1, 255]``, ``s = 5000 // q`` below 50 else ``200 − 2q`` (exact);
* 8×8 DCT, quantisation (round half away from zero), dequantisation and inverse DCT in float32 — where
  libjpeg uses its integer ``islow`` transforms: the only inexact step, a coefficient on a rounding
  boundary can land one level apart;
* ``h2v2_fancy_upsample`` (the triangle filter ``(3·a + b + 8) >> 4`` / ``+ 7``, edges replicated) and
  libjpeg's fixed-point YCbCr→RGB (exact integers).

Measured against PIL's libjpeg on real photos: ``docs/gpu.md`` (per-quality PSNR table) and
``tests/degrade/test_gpu_parts.py::test_tensor_jpeg_is_close_to_libjpeg``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from . import _common

__all__ = ["jpeg_tensor", "quant_tables"]

_STD_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                      92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
_STD_CHROMA = np.array([17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99,
                        99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32).reshape(8, 8)
_SCALE, _HALF = 16, 1 << 15


def _fix(x: float) -> int:
    return int(x * (1 << _SCALE) + 0.5)


@functools.lru_cache(maxsize=128)
def quant_tables(quality: int) -> np.ndarray:
    """``(2, 8, 8)`` int64 luma and chroma tables of libjpeg's ``jpeg_set_quality(quality, TRUE)``."""
    q = min(max(int(quality), 1), 100)
    s = 5000 // q if q < 50 else 200 - 2 * q
    t = np.clip((np.stack([_STD_LUMA, _STD_CHROMA]) * s + 50) // 100, 1, 255).astype(np.int64)
    t.setflags(write=False)
    return t


@functools.lru_cache(maxsize=4)
def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II (JPEG's DCT is its 2-D form)."""
    k = np.arange(8)
    d = np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return torch.from_numpy(d.astype(np.float32)).to(device)


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    n, h, w = plane.shape
    return plane.reshape(n, h // 8, 8, w // 8, 8)


def _code(plane: torch.Tensor, table: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Level shift, DCT, quantise, dequantise, inverse DCT, round, clamp: ``(n, H, W)`` int32 samples → the
    decoded int32 samples; ``table`` ``(n, 8, 8)`` float32."""
    n, h, w = plane.shape
    x = _blocks(plane.to(torch.float32) - 128.0)
    c = torch.einsum("ij,nbjck,lk->nbicl", d, x, d)
    q = table[:, None, :, None, :]
    c = torch.sign(c) * torch.floor(c.abs() / q + 0.5) * q
    y = torch.einsum("ji,nbjcl,lk->nbick", d, c, d).reshape(n, h, w)
    return torch.floor(y + 128.5).clamp_(0, 255).to(torch.int32)


def _rgb_to_ycc(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = (rgb[:, i].to(torch.int32) for i in range(3))
    off = (128 << _SCALE) + _HALF - 1
    y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _HALF) >> _SCALE
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + off) >> _SCALE
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + off) >> _SCALE
    return y, cb, cr


def _downsample(c: torch.Tensor) -> torch.Tensor:
    n, h, w = c.shape
    s = c.reshape(n, h // 2, 2, w // 2, 2).sum(dim=(2, 4))
    bias = torch.arange(w // 2, dtype=torch.int32, device=c.device) % 2 + 1  # 1, 2, 1, 2, ...
    return (s + bias) >> 2


def _fancy_upsample(c: torch.Tensor, up: torch.Tensor, down: torch.Tensor, left: torch.Tensor,
                    right: torch.Tensor) -> torch.Tensor:
    """libjpeg's ``h2v2_fancy_upsample`` of ``(n, h, w)`` chroma; ``up``/``down`` ``(n, h)`` and
    ``left``/``right`` ``(n, w)`` the neighbour indices with each image's own edges replicated."""
    n, h, w = c.shape
    near3 = 3 * c
    above = near3 + torch.gather(c, 1, up[:, :, None].expand(n, h, w))  # column sums for the upper output row
    below = near3 + torch.gather(c, 1, down[:, :, None].expand(n, h, w))
    out = torch.empty((n, h, 2, w, 2), dtype=torch.int32, device=c.device)
    for v, cs in enumerate((above, below)):
        lft = torch.gather(cs, 2, left[:, None, :].expand(n, h, w))
        rgt = torch.gather(cs, 2, right[:, None, :].expand(n, h, w))
        out[:, :, v, :, 0] = (3 * cs + lft + 8) >> 4
        out[:, :, v, :, 1] = (3 * cs + rgt + 7) >> 4
    return out.reshape(n, 2 * h, 2 * w)


def _ycc_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    cb, cr = cb - 128, cr - 128
    r = y + ((_fix(1.40200) * cr + _HALF) >> _SCALE)
    g = y + ((-_fix(0.34414) * cb + _HALF - _fix(0.71414) * cr) >> _SCALE)
    b = y + ((_fix(1.77200) * cb + _HALF) >> _SCALE)
    return torch.stack([r, g, b], 1).clamp_(0, 255).to(torch.uint8)


def jpeg_tensor(u8: torch.Tensor, sizes: Sequence[tuple[int, int]], qualities: Sequence[int | None]
                ) -> torch.Tensor:
    """Baseline 4:2:0 JPEG round trip of the samples with a quality, all at once on ``u8``'s device.

    Args:
        u8: ``(B, 3, H_max, W_max)`` uint8 RGB ragged batch (sample ``i`` in ``[:h_i, :w_i]``).
        sizes: ``(h_i, w_i)``.
        qualities: libjpeg quality 1..100 per sample, ``None`` to leave it as it is.

    Returns:
        A new uint8 ragged batch of the same shape: each sample with a quality replaced by its decoded JPEG
        (within the measured bound of libjpeg's own round trip), the others unchanged.

    Host work: one upload (sample ids, edge-replication and neighbour indices, quantisation tables); no
    device-to-host copy.
    """
    todo = [i for i, q in enumerate(qualities) if q is not None]
    if not todo:
        return u8
    sub = [sizes[i] for i in todo]
    n = len(todo)
    sh, sw = max(h for h, _ in sub), max(w for _, w in sub)
    hp, wp = -(-sh // 16) * 16, -(-sw // 16) * 16
    ch, cw = hp // 2, wp // 2
    hs, ws = np.array([h for h, _ in sub])[:, None], np.array([w for _, w in sub])[:, None]
    rows, cols = np.minimum(np.arange(hp), hs - 1), np.minimum(np.arange(wp), ws - 1)  # edge replication
    ar_h, ar_w = np.arange(ch)[None], np.arange(cw)[None]  # chroma neighbours, each image's own edges
    up, down = np.maximum(ar_h - 1, 0).repeat(n, 0), np.minimum(ar_h + 1, (hs + 1) // 2 - 1)
    left, right = np.maximum(ar_w - 1, 0).repeat(n, 0), np.minimum(ar_w + 1, (ws + 1) // 2 - 1)
    tables = np.stack([quant_tables(int(qualities[i])) for i in todo]).astype(np.float32)
    ids, rows, cols, up, down, left, right, tables = _common.upload(
        [np.array(todo, dtype=np.int64), rows, cols, up, down, left, right, tables], u8.device)
    x = u8.index_select(0, ids)[:, :, :sh, :sw] if n < u8.shape[0] else u8[:, :, :sh, :sw]
    x = torch.gather(x, 2, rows[:, None, :, None].expand(n, 3, hp, sw))
    x = torch.gather(x, 3, cols[:, None, None, :].expand(n, 3, hp, wp))
    y, cb, cr = _rgb_to_ycc(x)
    d = _dct_matrix(u8.device)
    with _common.true_fp32():  # TF32 (10-bit mantissa) in the DCT would move coefficients across quantisation steps
        y = _code(y, tables[:, 0], d)
        cb = _code(_downsample(cb), tables[:, 1], d)
        cr = _code(_downsample(cr), tables[:, 1], d)
    cb, cr = (_fancy_upsample(c, up, down, left, right) for c in (cb, cr))
    rgb = _ycc_to_rgb(y, cb, cr)[:, :, :sh, :sw]
    # zero outside each sample, as the ragged batch keeps it
    keep = ((torch.arange(sh, device=u8.device)[None, :, None] < (rows[:, -1:, None] + 1))
            & (torch.arange(sw, device=u8.device)[None, None, :] < (cols[:, None, -1:] + 1)))
    rgb = rgb * keep[:, None]
    out = u8.clone()
    out[:, :, :sh, :sw].index_copy_(0, ids, rgb)  # in place, through the view
    return out
