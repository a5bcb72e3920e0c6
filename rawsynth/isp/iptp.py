"""IPTP, the inverse ISP ``F_PTP^{-1}`` (paper Eq. 7–10): sRGB → linear camera RGB. See ``docs/isp.md``."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from .._checks import check_bchw, check_even
from ..errors import ConfigError, ShapeError
from .params import ISPBatch, ISPParams, as_isp_batch

__all__ = ["EPS", "HIGHLIGHT_INFLECTION", "UNPROCESS_BACKENDS", "inverse_tone", "inverse_gamma", "apply_matrix",
           "inverse_white_balance", "linear_lut", "lut_lookup", "unprocess", "invertible_mask", "Unprocess"]

#: ε of Eq. 10: ``max(x, ε)`` keeps the power functions finite.
EPS = 1e-8
#: Grey level above which the inverse white balance fades to gain 1 so highlights do not go grey.
HIGHLIGHT_INFLECTION = 0.9
# Inputs this close to 0 or 1 take the gradient of the clamped value, not asin's infinite slope.
_TONE_GRAD_MARGIN = 1e-6


def _inverse_smoothstep(x: torch.Tensor) -> torch.Tensor:
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)


def inverse_tone(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the smoothstep tone curve: ``y = 0.5 − sin(asin(1 − 2x) / 3)`` on ``clip(x, 0, 1)``.

    Args:
        x: any shape, float, sRGB-encoded values (clipped to ``[0, 1]``).

    Returns:
        Same shape, ``[0, 1]``. The exact value everywhere; where ``x`` is within ``1e-6`` of 0 or 1 the
        gradient is that of the clamped point (finite) instead of asin's infinite slope.
    """
    x = x.clamp(0.0, 1.0)
    y = _inverse_smoothstep(x)
    if torch.is_grad_enabled() and x.requires_grad:
        safe = _inverse_smoothstep(x.clamp(_TONE_GRAD_MARGIN, 1.0 - _TONE_GRAD_MARGIN))
        y = y.detach() + (safe - safe.detach())
    return y


def inverse_gamma(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 10 (right): ``max(x, ε) ** 2.2``. Any shape; ``[0, 1]`` → ``[ε^2.2, 1]``."""
    return x.clamp_min(eps) ** 2.2


def apply_matrix(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-pixel colour transform ``out[b, :, h, w] = m[b] @ x[b, :, h, w]``.

    Args:
        x: ``(B, 3, H, W)``.
        m: ``(B, 3, 3)`` (or ``(3, 3)``, shared).
    """
    if m.ndim == 2:
        return torch.einsum("ij,bjhw->bihw", m, x)
    return torch.einsum("bij,bjhw->bihw", m, x)


def inverse_white_balance(x: torch.Tensor, params: ISPBatch, inflection: float = HIGHLIGHT_INFLECTION,
                          memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Eq. 8 (right), highlight-safe: divide by the white-balance and brightness gains.

    ``g = (1/red, 1, 1/blue) / rgb_gain``; ``gray = mean_c(x)``;
    ``mask = (max(gray − inflection, 0) / (1 − inflection))²``; ``out = x · max(mask + (1 − mask)·g, g)``.
    Below the inflection this is exactly ``x · g``; towards white the gains fade to 1 so saturated
    highlights stay neutral after PTP instead of turning magenta.

    Where the grey level is at most the inflection the mask is exactly 0 and the factor exactly ``g``, so the
    mask formula is evaluated (with the same float operations) only on the few pixels above it.

    Args:
        x: ``(B, 3, H, W)`` linear camera RGB.
        params: per-sample gains.
        inflection: grey level where the fade to gain 1 starts.
        memory_format: memory layout of the result (``torch.channels_last`` makes ``out[b].permute(1, 2, 0)``
            a contiguous ``(H, W, 3)`` array).
    """
    one = torch.ones_like(params.red_gain)
    g = torch.stack([1.0 / params.red_gain, one, 1.0 / params.blue_gain], dim=1) / params.rgb_gain[:, None]
    g4 = g[:, :, None, None]
    if torch.is_grad_enabled() and (x.requires_grad or g.requires_grad):  # out= records no gradient
        out = (x * g4).contiguous(memory_format=memory_format)
    else:
        out = torch.mul(x, g4, out=torch.empty_like(x, memory_format=memory_format))
    gray = x.mean(dim=1)  # (B, H, W)
    b, h, w = (gray > inflection).nonzero(as_tuple=True)
    if b.numel():
        mask = ((gray[b, h, w] - inflection).clamp_min(0.0) / (1.0 - inflection)) ** 2  # (N,)
        gb = g[b]  # (N, 3)
        out[b, :, h, w] = x[b, :, h, w] * torch.maximum(mask[:, None] + (1.0 - mask[:, None]) * gb, gb)
    return out


def _table() -> np.ndarray:
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    return inverse_gamma(inverse_tone(levels)).float().numpy()


_TABLE = _table()  # entry k: inverse_gamma(inverse_tone(k / 255)) in float64, rounded once to float32
_TABLE_ROW = np.ascontiguousarray(_TABLE.reshape(1, 256))  # cv2.LUT's table shape
_TABLE_BY_DEVICE: dict[torch.device, torch.Tensor] = {}


def linear_lut(device: str | torch.device | None = None) -> torch.Tensor:
    """The 8-bit inverse tone + inverse gamma table: ``(256,)`` float32, entry ``k`` is
    ``inverse_gamma(inverse_tone(k / 255))`` computed in float64 and rounded once. One cached copy per device
    (read-only)."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    t = _TABLE_BY_DEVICE.get(dev)
    if t is None:
        t = _TABLE_BY_DEVICE[dev] = torch.from_numpy(_TABLE).to(dev)
    return t


def lut_lookup(srgb: torch.Tensor) -> torch.Tensor:
    """``inverse_gamma(inverse_tone(k / 255))`` of a uint8 ``(B, C, H, W)`` tensor by table lookup: float32, same
    shape, device and memory layout (channels-last in, channels-last out). On the CPU it is ``cv2.LUT`` (a copy
    of the table entries, ~4x faster than indexing)."""
    if srgb.dtype != torch.uint8 or srgb.ndim != 4:
        raise TypeError(f"lut_lookup takes a uint8 (B, C, H, W) tensor, got {srgb.dtype} {tuple(srgb.shape)}")
    if srgb.device.type != "cpu" or srgb.numel() == 0:
        return linear_lut(srgb.device)[srgb.long()]
    b, c, h, w = srgb.shape
    nhwc = srgb.permute(0, 2, 3, 1)
    if c in (1, 3, 4) and nhwc.is_contiguous():  # pixel-interleaved: cv2 sees B·H rows of W pixels
        out = cv2.LUT(nhwc.numpy().reshape(b * h, w, c), _TABLE_ROW)
        return torch.from_numpy(out.reshape(b, h, w, c)).permute(0, 3, 1, 2)
    out = cv2.LUT(np.ascontiguousarray(srgb.numpy()).reshape(b * c * h, w), _TABLE_ROW)
    return torch.from_numpy(out.reshape(b, c, h, w))


#: ``backend=`` choices of :func:`unprocess`.
UNPROCESS_BACKENDS = ("auto", "torch", "triton")


def _use_triton(srgb: torch.Tensor, backend: str) -> bool:
    if backend not in UNPROCESS_BACKENDS:
        raise ConfigError(f"unprocess: unknown backend {backend!r}; use one of {list(UNPROCESS_BACKENDS)}")
    if backend == "torch":
        return False
    from ..kernels._common import Backend, resolve_backend  # the kernels package imports this one

    if backend == "auto" and (srgb.dtype != torch.uint8 or not srgb.is_cuda or srgb.shape[-1] % 2
                              or srgb.shape[-2] % 2):
        return False  # float input stays on the differentiable torch path; the kernel wants whole 2x2 blocks
    return resolve_backend(backend, srgb.device) is Backend.TRITON


def _unprocess_triton(srgb: torch.Tensor, params) -> torch.Tensor:
    """The fused IPTP+MNS kernel's linear output (noise-free, its DN plane discarded)."""
    from ..kernels import iptp_mns
    from ..mns import NoiseParams, Pattern, SensorParams

    check_even(srgb, "srgb")
    _, lin = iptp_mns(srgb, params, Pattern.RGGB, NoiseParams(0.0, 0.0, 0.0), SensorParams(), [0] * srgb.shape[0],
                      return_linear=True, backend="triton")
    return lin


def unprocess(srgb: torch.Tensor, params: ISPParams | list[ISPParams] | ISPBatch, *,
              backend: str = "auto") -> torch.Tensor:
    """IPTP, ``F_PTP^{-1}``: sRGB → linear camera RGB (paper Eq. 7–10).

    inverse tone → inverse gamma (Eq. 10) → inverse CCM (Eq. 9) → highlight-safe inverse white balance (Eq. 8)
    → clip. On uint8 input the first two (pointwise) steps are a 256-entry table lookup (:func:`lut_lookup`),
    equal to the float maths on ``k / 255`` to float rounding.

    Args:
        srgb: ``(B, 3, H, W)`` float in ``[0, 1]`` (values outside are clipped) or uint8 ``[0, 255]``, any device.
        params: one :class:`ISPParams` for the whole batch, one per sample, or an :class:`ISPBatch`.
        backend: ``"auto"`` (the fused Triton kernel for uint8 CUDA tensors of even size when Triton is available
            and ``RAWSYNTH_KERNELS`` is not ``0``; the torch operations otherwise, so float input stays
            differentiable), ``"torch"`` (the reference) or ``"triton"`` (:func:`rawsynth.kernels.iptp_mns`'s
            linear output: bit-identical to ``"torch"`` on uint8 input, ~1e-6 on float; even ``H``, ``W``; not
            differentiable; Triton's interpreter on CPU tensors).

    Returns:
        ``(B, 3, H, W)`` linear camera RGB in ``[0, 1]``: float input's dtype, float32 for uint8; same device.
        A channels-last uint8 input gives a channels-last result on the torch path (``out[0].permute(1, 2, 0)``
        is then a contiguous ``(H, W, 3)`` array). Exactly inverted by :func:`~rawsynth.isp.process` wherever
        :func:`invertible_mask` is true.

    Example:
        >>> import torch
        >>> from rawsynth.isp import fixed_isp_params, process, unprocess
        >>> x = torch.full((1, 3, 4, 4), 0.5)
        >>> p = fixed_isp_params()
        >>> torch.allclose(process(unprocess(x, p), p), x, atol=1e-5)
        True
    """
    check_bchw(srgb, "srgb", channels=3, floating=False)
    if srgb.dtype != torch.uint8 and not srgb.is_floating_point():
        raise ShapeError(f"srgb must be uint8 or floating point, got {srgb.dtype}")
    if _use_triton(srgb, backend):
        return _unprocess_triton(srgb, params)
    if srgb.dtype == torch.uint8:
        x = lut_lookup(srgb)
        p = as_isp_batch(params, x)
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = inverse_white_balance(apply_matrix(x, p.rgb2cam), p, memory_format=fmt)
        return x.clamp_(0.0, 1.0)
    p = as_isp_batch(params, srgb)
    x = inverse_gamma(inverse_tone(srgb))
    x = apply_matrix(x, p.rgb2cam)
    x = inverse_white_balance(x, p)
    return x.clamp(0.0, 1.0)


@torch.no_grad()
def invertible_mask(srgb: torch.Tensor, params, inflection: float = HIGHLIGHT_INFLECTION,
                    margin: float = 1e-6) -> torch.Tensor:
    """Where ``process(unprocess(srgb)) == srgb`` holds exactly (up to float error).

    A pixel is invertible when the inverse CCM keeps every channel inside ``[0, 1]`` (PTP clips
    out-of-gamut and white-balanced values there, as a camera does), its grey level stays below the
    highlight inflection (plain gains), and the result is not clipped at 1.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    check_bchw(srgb, "srgb", channels=3)
    p = as_isp_batch(params, srgb)
    cam = apply_matrix(inverse_gamma(inverse_tone(srgb)), p.rgb2cam)
    in_gamut = ((cam >= margin) & (cam <= 1.0 - margin)).all(1, keepdim=True)
    ok = in_gamut & (cam.mean(1, keepdim=True) <= inflection)
    lin = inverse_white_balance(cam, p, inflection)
    return ok & (lin <= 1.0 - margin).all(1, keepdim=True)


class Unprocess(nn.Module):
    """Module form of :func:`unprocess` (``forward(srgb, params)``)."""

    def forward(self, srgb: torch.Tensor, params) -> torch.Tensor:
        return unprocess(srgb, params)
