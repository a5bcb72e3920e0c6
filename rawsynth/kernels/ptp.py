"""Fused PTP (the forward ISP, :func:`rawsynth.isp.process`) with a fused backward, for RDDM's sRGB loss.

White balance → clip → CCM ``cam2rgb`` → clip → gamma ``max(x, ε)^(1/2.2)`` → tone ``3x² − 2x³``, one read of
the linear pixel and one write of the sRGB pixel; the backward recomputes the forward from the linear input (no
intermediates are kept) and writes ``∂L/∂linear`` in one pass. Gradients w.r.t. the ISP parameters (when the
:class:`~rawsynth.isp.ISPBatch` tensors require grad) come from the torch reference, recomputed in the backward.

:func:`rawsynth.isp.process` calls :func:`ptp` by itself for float32 CUDA tensors (when ``triton`` is importable and
``RAWSYNTH_KERNELS`` is not ``0``); every other input takes the torch reference, which stays the CPU path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_bchw
from ..errors import ShapeError
from ..isp.params import ISPBatch, ISPParams, as_isp_batch
from ._common import Backend, kernel_module, launch, resolve_backend

__all__ = ["ptp", "ptp_reference"]

_BLOCK = 1024
_EPS = 1e-8
_INV_GAMMA = 1.0 / 2.2


def ptp_reference(linear: torch.Tensor, params: ISPBatch | ISPParams | Sequence[ISPParams]) -> torch.Tensor:
    """The torch reference: :func:`rawsynth.isp.process`'s own operations (no dispatch), differentiable."""
    from ..isp.ptp import _process_torch

    return _process_torch(linear, params)


def _table(wb: torch.Tensor, cam2rgb: torch.Tensor) -> torch.Tensor:
    b = wb.shape[0]
    return torch.cat([cam2rgb.detach().reshape(b, 9), wb.detach()], dim=1).float().contiguous()


def _check_limits(b: int, h: int, w: int) -> None:
    """The kernels' index arithmetic: the pixel index inside a sample is int32 (``offs < H·W``, grid x
    ``⌈H·W / BLOCK⌉``), the sample offset ``b·3·H·W`` and the channel offsets are int64; grid y (the batch) is
    below 2**16 (CUDA's limit) — :func:`ptp` launches larger batches in chunks."""
    if h * w + _BLOCK >= 2**31:
        raise ShapeError(f"the fused PTP kernel indexes pixels with int32: {h}x{w} = {h * w} pixels per sample is "
                         "too many (< 2**31 - 1024); split the image into tiles or use backend='torch'")


_MAX_GRID_Y = 65535


def _run(name: str, device: torch.device, b: int, hw: int, *args) -> None:
    """Launch ``name`` over ``b`` samples of ``hw`` pixels; args are ``(B, 3, H, W)`` tensors then the rest.
    Batches above the grid's y limit run in chunks of sample views."""
    k = kernel_module("_ptp_triton", device)
    for s in range(0, b, _MAX_GRID_Y):
        n = min(_MAX_GRID_Y, b - s)
        part = [a[s:s + n] if isinstance(a, torch.Tensor) else a for a in args]
        launch(getattr(k, name), (-(-hw // _BLOCK), n), device, *part, hw, _EPS, _INV_GAMMA, BLOCK=_BLOCK)


class _PTPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, linear, rgb_gain, red_gain, blue_gain, cam2rgb, rgb2cam):
        wb = ISPBatch(rgb2cam, cam2rgb, rgb_gain, red_gain, blue_gain).wb_gains()  # as white_balance does
        table = _table(wb, cam2rgb)
        x = linear.contiguous()
        b, _, h, w = x.shape
        out = torch.empty_like(x)
        _check_limits(b, h, w)
        if x.numel():
            _run("_ptp_fwd_kernel", x.device, b, h * w, x, table, out)
        ctx.save_for_backward(x, rgb_gain, red_gain, blue_gain, cam2rgb, rgb2cam)
        ctx.table = table
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, rgb_gain, red_gain, blue_gain, cam2rgb, rgb2cam = ctx.saved_tensors
        grads = [None] * 6
        if ctx.needs_input_grad[0]:
            go = grad_out.contiguous().float()
            gin = torch.empty_like(x)
            b, _, h, w = x.shape
            if x.numel():
                _run("_ptp_bwd_kernel", x.device, b, h * w, x, ctx.table, go, gin)
            grads[0] = gin
        if any(ctx.needs_input_grad[1:5]):  # ISP parameters: the torch reference, recomputed
            with torch.enable_grad():
                ps = [t.detach().requires_grad_(need) for t, need in
                      zip((rgb_gain, red_gain, blue_gain, cam2rgb), ctx.needs_input_grad[1:5])]
                p = ISPBatch(rgb2cam.detach(), ps[3], ps[0], ps[1], ps[2])
                out = ptp_reference(x.detach(), p)
                wanted = [t for t in ps if t.requires_grad]
                got = iter(torch.autograd.grad(out, wanted, grad_out))
            for i, t in enumerate(ps):
                if t.requires_grad:
                    grads[1 + i] = next(got)
        return tuple(grads)


def ptp(linear: torch.Tensor, params: ISPBatch | ISPParams | Sequence[ISPParams],
        backend: Backend | str = "auto") -> torch.Tensor:
    """PTP, ``F_PTP``: linear camera RGB → sRGB, fused (same maths as :func:`rawsynth.isp.process`).

    Args:
        linear: ``(B, 3, H, W)`` float32 linear camera RGB, nominally ``[0, 1]``.
        params: one :class:`~rawsynth.isp.ISPParams` for the batch, one per sample, or an
            :class:`~rawsynth.isp.ISPBatch` (whose tensors may require grad).
        backend: ``"auto"`` (Triton on CUDA tensors when available, else torch), ``"torch"`` or ``"triton"``
            (on a CPU tensor: Triton's interpreter).

    Returns:
        ``(B, 3, H, W)`` float32 sRGB in ``[0, 1]``, differentiable w.r.t. ``linear`` (fused backward) and the
        ISP tensors (torch reference).
    """
    check_bchw(linear, "linear", channels=3)
    which = resolve_backend(backend, linear.device)
    if which is Backend.TORCH:
        return ptp_reference(linear, params)
    if which is not Backend.TRITON:
        raise ShapeError(f"unhandled backend {which!r}")
    if linear.dtype != torch.float32:
        raise ShapeError(f"the fused PTP kernel takes float32 input, got {linear.dtype}; use backend='torch'")
    p = as_isp_batch(params, linear)
    return _PTPFunction.apply(linear, p.rgb_gain, p.red_gain, p.blue_gain, p.cam2rgb, p.rgb2cam)
