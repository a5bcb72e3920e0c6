"""The chain of :func:`~rawsynth.degrade.apply_degradation` for a whole batch: :func:`degrade_batch_gpu`.

Host work per batch, by design (asserted by ``tests/degrade/test_gpu_parts.py``): per stage one upload per
blur, resize and JPEG step (:func:`~rawsynth.degrade.gpu._common.upload`: one ``non_blocking`` copy of packed
tables), blur kernels built on the device from their parameters, and — with the default ``tensor`` JPEG on
CUDA — no device-to-host copy at all except the one-byte input check, read at an early event
(:class:`~rawsynth.degrade.gpu._common.DeferredCheck`) so the host never waits for the queued chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..._checks import check_bchw, per_sample
from ...errors import ConfigError, ShapeError
from ..config import FinalOrder
from ..params import DegradationParams, StageParams
from . import _common
from ._common import Ragged, quantize, to_float
from .blur import BLUR_METHODS, blur_batch
from .jpeg import jpeg_u8, resolve_codec
from .resize import resize_batch

__all__ = ["degrade_batch_gpu"]


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
    return plist


def _range_check(x: torch.Tensor) -> _common.DeferredCheck:
    """A device flag "some value is outside [0, 1] or not finite", read later without draining the stream."""
    xd = x.detach()
    return _common.DeferredCheck(~((xd >= 0) & (xd <= 1)).all())


def _raise_range(x: torch.Tensor) -> None:
    lo, hi = torch.aminmax(x.detach())  # the error path may synchronise
    raise ShapeError(f"x values must be finite and in [0, 1], got [{float(lo)}, {float(hi)}]")


def _where_samples(mask: Sequence[bool], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sample ``i`` from ``a`` where ``mask[i]``, else from ``b`` (the mask travels in one upload)."""
    if all(mask):
        return a
    if not any(mask):
        return b
    (m,) = _common.upload([np.array(mask, dtype=np.bool_)], a.device)
    return torch.where(m[:, None, None, None], a, b)


def _stage(r: Ragged, stages: list[StageParams], by_factor: bool, blur: str, codec: str) -> Ragged:
    data = blur_batch(r.data, r.sizes, [s.kernel for s in stages], blur)
    out_sizes = [s.resize_size for s in stages]
    factors = [s.resize_scale if by_factor else None for s in stages]
    data = resize_batch(data, r.sizes, out_sizes, [s.resize_mode for s in stages], factors)
    r = Ragged(data, out_sizes)
    qualities = [s.jpeg_quality for s in stages]
    if any(q is not None for q in qualities):
        jp = to_float(jpeg_u8(quantize(r.data), r.sizes, qualities, codec))
        # samples without JPEG keep their float values (no rounding)
        r = Ragged(_where_samples([q is None for q in qualities], r.data, jp), r.sizes)
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
        jpeg: ``"auto"`` (``tensor`` on CUDA, ``libjpeg`` on CPU), ``"tensor"`` (batched libjpeg model on the
            device, :mod:`~rawsynth.degrade.gpu.tensor_jpeg`), ``"diffjpeg"`` (basicsr's, as Real-ESRGAN
            trains), ``"nvjpeg"`` (CUDA, 4:4:4 chroma) or
            ``"libjpeg"`` (the CPU chain's codec, run on the host also for CUDA tensors).
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
    codec = resolve_codec(jpeg, x.device)
    b, _, h, w = x.shape
    check = _range_check(x)
    with torch.no_grad():
        r = Ragged(x.detach().to(torch.float32).contiguous(), [(h, w)] * b)
        r = _stage(r, [p.first for p in plist], True, blur, codec)
        r = _stage(r, [p.second for p in plist], False, blur, codec)
        # final step, mixed orders: JPEG-first samples get their JPEG, then everybody resizes + sinc, then
        # resize-first samples get their JPEG and JPEG-first samples only the rounding
        jfirst = [p.final.order is FinalOrder.JPEG_RESIZE_SINC for p in plist]
        if any(jfirst):
            u8 = jpeg_u8(quantize(r.data), r.sizes, [p.final.jpeg_quality if j else None
                                                     for p, j in zip(plist, jfirst)], codec)
            r = Ragged(_where_samples(jfirst, to_float(u8), r.data), r.sizes)
        lq = [p.lq_size for p in plist]
        data = resize_batch(r.data, r.sizes, lq, [p.final.resize_mode for p in plist])
        data = blur_batch(data, lq, [p.final.sinc for p in plist], blur)
        u8 = jpeg_u8(quantize(data), lq, [None if j else p.final.jpeg_quality for p, j in zip(plist, jfirst)],
                     codec)
        back = [p for p in plist if p.resize_back]
        if back and len(back) != b:  # pragma: no cover - excluded by the equal out_size check
            raise ShapeError("params mix resize_back true and false")
        if back:
            data = resize_batch(to_float(u8), lq, [p.in_size for p in plist], [p.resize_back_mode for p in plist])
            u8 = quantize(data)
        oh, ow = plist[0].out_size
        u8 = u8[:, :, :oh, :ow].contiguous()
    if check.value():  # the flag was copied at the start: this waits for that copy, not for the chain
        _raise_range(x)
    if as_uint8:
        return u8
    return to_float(u8).to(x.dtype)

