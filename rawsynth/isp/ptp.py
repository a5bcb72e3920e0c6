"""PTP, the forward ISP ``F_PTP`` (paper Eq. 8–10): linear camera RGB → sRGB, differentiable (the sRGB branch of
RDDM's loss), fused on CUDA. See ``docs/isp.md``."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_bchw
from .iptp import EPS, apply_matrix
from .params import ISPBatch, ISPParams, as_isp_batch

__all__ = ["white_balance", "gamma", "tone", "process", "Process"]


def white_balance(x: torch.Tensor, params: ISPBatch) -> torch.Tensor:
    """Eq. 8 (left): ``x · rgb_gain · (red_gain, 1, blue_gain)`` per channel. ``x``: ``(B, 3, H, W)``."""
    return x * params.wb_gains()[:, :, None, None]


def gamma(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 10 (left): ``max(x, ε) ** (1/2.2)``. Any shape."""
    return x.clamp_min(eps) ** (1.0 / 2.2)


def tone(x: torch.Tensor) -> torch.Tensor:
    """Smoothstep tone curve ``3x² − 2x³`` on ``[0, 1]``. Any shape."""
    return 3.0 * x**2 - 2.0 * x**3


def process(linear: torch.Tensor, params: ISPParams | list[ISPParams] | ISPBatch) -> torch.Tensor:
    """PTP, ``F_PTP``: linear camera RGB → sRGB.

    Steps: white balance (clip to ``[0, 1]``, the sensor's saturation) → CCM ``cam2rgb`` (clip to
    ``[0, 1]``, out of gamut) → gamma → tone.

    Args:
        linear: ``(B, 3, H, W)`` float linear camera RGB, nominally ``[0, 1]`` (e.g. a demosaicked RAW or
            RDDM's output).
        params: one :class:`ISPParams` for the batch, one per sample, or an :class:`ISPBatch`.

    Returns:
        ``(B, 3, H, W)`` sRGB in ``[0, 1]``, same dtype/device.

    On a float32 CUDA tensor this runs the fused Triton kernel :func:`rawsynth.kernels.ptp.ptp` (same maths,
    fused backward) when ``triton`` is importable and the environment variable ``RAWSYNTH_KERNELS`` is not ``0``;
    everywhere else (the CPU included) it runs the torch operations, the reference.
    """
    check_bchw(linear, "linear", channels=3)
    if linear.is_cuda and linear.dtype == torch.float32:
        from ..kernels._common import kernels_enabled, triton_available

        if triton_available() and kernels_enabled():
            from ..kernels.ptp import ptp

            return ptp(linear, params, backend="triton")
    return _process_torch(linear, params)


def _process_torch(linear: torch.Tensor, params) -> torch.Tensor:
    """:func:`process` in torch operations (any device and dtype): the reference of the fused kernel."""
    check_bchw(linear, "linear", channels=3)
    p = as_isp_batch(params, linear)
    x = white_balance(linear, p).clamp(0.0, 1.0)
    x = apply_matrix(x, p.cam2rgb).clamp(0.0, 1.0)
    return tone(gamma(x))


class Process(nn.Module):
    """Module form of :func:`process` (``forward(linear, params)``)."""

    def forward(self, linear: torch.Tensor, params) -> torch.Tensor:
        return process(linear, params)
