"""The CPU degradation chain: apply recorded parameters (blur, resize, JPEG, 8-bit rounding) in Real-ESRGAN's order;
the reference of every other path. See ``docs/degrade.md``."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_bchw, per_sample
from ..errors import ShapeError
from .config import FinalOrder, KernelType, ResizeMode
from .blur_kernels import build_kernel
from .params import DegradationParams, KernelParams, StageParams

__all__ = ["apply_degradation", "apply_degradation_u8", "degrade_batch", "blur", "blur_kernel", "resize", "resize_back",
           "quantize_u8", "quantize", "jpeg"]


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of ``img`` with ``kernel`` (odd ``(k, k)`` float32), reflect-101 borders.

    Same maths as basicsr's ``filter2D`` (``F.pad(..., mode='reflect')`` then ``F.conv2d``). Returns a new
    ``(H, W, 3)`` float32 array (values may leave ``[0, 1]``: sinc kernels have negative lobes).
    """
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def blur_kernel(img: np.ndarray, kp: KernelParams) -> np.ndarray:
    """Blur ``img`` with the kernel ``kp`` describes (unpadded; padding adds only zero terms).

    An isotropic Gaussian is rank one, ``K = u uᵀ`` with ``u = K[:, c] / sqrt(K[c, c])``, so it runs as two 1-D
    passes (``cv2.sepFilter2D``, same borders): the same sums regrouped, ~3e-7 from :func:`blur` and 5–10×
    faster for large kernels. Every other kind runs :func:`blur`.
    """
    k = build_kernel(kp, pad_to=None)
    if kp.kind is KernelType.ISO:
        c = kp.size // 2
        u = (k[:, c].astype(np.float64) / np.sqrt(np.float64(k[c, c]))).astype(np.float32)
        return cv2.sepFilter2D(img, -1, u, u, borderType=cv2.BORDER_REFLECT_101)
    return blur(img, k)


def resize(img: np.ndarray, mode: ResizeMode | str, size: tuple[int, int] | None = None,
           scale_factor: float | None = None) -> np.ndarray:
    """``F.interpolate`` of an ``(H, W, 3)`` float32 image to ``size`` ``(h, w)`` or by ``scale_factor``.

    ``bilinear``/``bicubic`` use ``align_corners=False`` and no antialias, as Real-ESRGAN; no clamping (bicubic
    may overshoot ``[0, 1]``). Give exactly one of ``size`` and ``scale_factor``: with ``scale_factor`` the
    output is ``floor(H * f)`` and the sampling grid uses ``f`` itself, not ``h / H`` (as Real-ESRGAN's first
    order does). Returns a new contiguous ``(h, w, 3)`` float32 array.
    """
    mode = ResizeMode(mode)
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size and scale_factor")
    if scale_factor == 1.0 or (size is not None and tuple(size) == img.shape[:2]):
        # unit scale: every mode samples each pixel's own centre with weight exactly 1 (area: 1-pixel windows),
        # so F.interpolate returns the input unchanged — skip its ~5 ms on a 512² image (Real-ESRGAN's 'keep')
        return np.array(img, dtype=np.float32, order="C", copy=True)
    if not img.flags.writeable:  # torch.from_numpy warns on read-only arrays
        img = img.copy()
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    kw = {} if mode is ResizeMode.AREA else {"align_corners": False}
    with torch.no_grad():
        out = F.interpolate(t, size=None if size is None else tuple(size), scale_factor=scale_factor,
                            mode=mode.value, **kw)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


_CV2_INTERP = {ResizeMode.BILINEAR: cv2.INTER_LINEAR, ResizeMode.BICUBIC: cv2.INTER_CUBIC}


def resize_back(img: np.ndarray, mode: ResizeMode | str, size: tuple[int, int]) -> np.ndarray:
    """Resize the LQ back to the HQ size ``(H, W)`` (rawsynth's step; Real-ESRGAN has none).

    ``bilinear``/``bicubic`` use ``cv2.resize`` (``INTER_LINEAR``/``INTER_CUBIC``: half-pixel centres,
    cubic ``a = -0.75``, replicated border — the same maths as ``F.interpolate(..., align_corners=False)``,
    agreeing to ~4e-7 on integer-ratio upsampling and about 20× faster on one core); ``area`` uses
    :func:`resize`. Returns a new ``(H, W, 3)`` float32 array.
    """
    mode = ResizeMode(mode)
    if mode is ResizeMode.AREA:
        return resize(img, mode, size=size)
    return cv2.resize(img, (int(size[1]), int(size[0])), interpolation=_CV2_INTERP[mode])


def quantize_u8(img: np.ndarray) -> np.ndarray:
    """Real-ESRGAN's ``clamp((x * 255).round(), 0, 255)`` as ``(H, W, 3)`` uint8 (round half to even)."""
    # OpenCV's saturating float32 x·255 with round-half-even, after clipping to [0, 2] (beyond 1 both give 255):
    # equal to np.clip(np.rint(x * np.float32(255)), 0, 255).astype(np.uint8) for every finite float32 (checked
    # exhaustively), in two passes instead of four
    return cv2.convertScaleAbs(np.clip(img, np.float32(0.0), np.float32(2.0)), alpha=255.0)


def jpeg(u8: np.ndarray, quality: int) -> np.ndarray:
    """Encode an ``(H, W, 3)`` uint8 RGB image as baseline JPEG with libjpeg (OpenCV; 4:2:0 chroma
    subsampling, ``quality`` 1..100) and decode it back to ``(H, W, 3)`` uint8 RGB."""
    bgr = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
    if not ok:  # pragma: no cover - libjpeg does not fail on valid uint8 RGB
        raise RuntimeError(f"OpenCV failed to JPEG-encode a {u8.shape} image")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _to_float(u8: np.ndarray) -> np.ndarray:
    return np.divide(u8, np.float32(255.0), dtype=np.float32)  # = u8.astype(np.float32) / 255, one pass


def _jpeg_float(x: np.ndarray, quality: int) -> np.ndarray:
    # Real-ESRGAN clamps to [0, 1] before its JPEG; libjpeg also needs 8-bit input
    return _to_float(jpeg(quantize_u8(x), quality))


def _stage(x: np.ndarray, sp: StageParams, by_factor: bool, what: str) -> np.ndarray:
    if sp.kernel is not None:
        x = blur_kernel(x, sp.kernel)
    if by_factor:
        x = resize(x, sp.resize_mode, scale_factor=sp.resize_scale)
    else:
        x = resize(x, sp.resize_mode, size=sp.resize_size)
    if x.shape[:2] != sp.resize_size:
        raise ShapeError(f"{what}: the resize gave {x.shape[:2]}, params recorded {sp.resize_size}; the params "
                         "were not drawn for this image size")
    if sp.jpeg_quality is not None:
        x = _jpeg_float(x, sp.jpeg_quality)
    return x


def _check_image(img, params: DegradationParams) -> np.ndarray:
    if not isinstance(params, DegradationParams):
        raise TypeError(f"params must be a DegradationParams, got {type(params).__name__}")
    if not isinstance(img, np.ndarray):
        raise ShapeError(f"img must be a numpy array of shape (H, W, 3), got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ShapeError(f"img must have shape (H, W, 3), got {img.shape}")
    if img.dtype != np.float32:
        raise ShapeError(f"img must be float32 in [0, 1], got {img.dtype}; convert with img.astype(np.float32) / 255")
    h, w = img.shape[:2]
    if h % params.scale or w % params.scale:
        raise ShapeError(f"img size {(h, w)} must be a multiple of scale {params.scale}; crop it first")
    if (h, w) != params.in_size:
        raise ShapeError(f"img size {(h, w)} does not match the params' in_size {params.in_size}; draw params "
                         "for this size with sample_degradation(rng, cfg, img.shape[:2])")
    lo, hi = float(img.min()), float(img.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise ShapeError(f"img values must be finite and in [0, 1], got [{lo}, {hi}]")
    return np.ascontiguousarray(img)


def apply_degradation(img: np.ndarray, params: DegradationParams) -> np.ndarray:
    """Degrade an HQ image with recorded parameters (Real-ESRGAN's two orders, without noise).

    Steps: first order (blur → resize by factor → clamp/round → JPEG); second order (blur if drawn → resize to
    ``(int(H/scale·f), int(W/scale·f))``); final step in ``params.final.order``: either
    ``[resize to (H/scale, W/scale) → sinc] → clamp/round → JPEG`` or ``clamp/round → JPEG → [resize → sinc]``;
    clamp and round to 8 bits; if ``params.resize_back``, resize to ``(H, W)`` and clamp/round again.

    Args:
        img: ``(H, W, 3)`` float32 sRGB in ``[0, 1]``, ``(H, W) == params.in_size`` (multiples of
            ``params.scale``). Not modified.
        params: from :func:`~rawsynth.degrade.sample_degradation`.

    Returns:
        ``(*params.out_size, 3)`` float32 (``(H, W)`` with resize back, else ``(H/scale, W/scale)``) whose values
        are exactly ``k / 255`` for integers ``k`` in ``[0, 255]``.

    Raises:
        ShapeError: wrong type, shape, dtype or size, or values outside ``[0, 1]``.
    """
    return _to_float(apply_degradation_u8(img, params))


def apply_degradation_u8(img: np.ndarray, params: DegradationParams) -> np.ndarray:
    """:func:`apply_degradation` returning its 8-bit result ``k`` as ``(h, w, 3)`` uint8 (not ``k / 255``)."""
    x = _check_image(img, params)
    x = _stage(x, params.first, True, "first")
    x = _stage(x, params.second, False, "second")
    fp = params.final
    if fp.order is FinalOrder.RESIZE_SINC_JPEG:
        x = resize(x, fp.resize_mode, size=params.lq_size)
        if fp.sinc is not None:
            x = blur_kernel(x, fp.sinc)
        u8 = jpeg(quantize_u8(x), fp.jpeg_quality)
    elif fp.order is FinalOrder.JPEG_RESIZE_SINC:
        x = resize(_jpeg_float(x, fp.jpeg_quality), fp.resize_mode, size=params.lq_size)
        if fp.sinc is not None:
            x = blur_kernel(x, fp.sinc)
        u8 = quantize_u8(x)
    else:  # pragma: no cover
        raise AssertionError(fp.order)
    if params.resize_back:
        u8 = quantize_u8(resize_back(_to_float(u8), params.resize_back_mode, params.in_size))
    return u8


def batch_params(x: torch.Tensor, params, name: str, floating: bool = True) -> list[DegradationParams]:
    """Check a ``(B, 3, H, W)`` batch and broadcast ``params`` to ``B`` entries that share one output size."""
    check_bchw(x, name, channels=3, floating=floating)
    if x.shape[0] == 0:
        raise ShapeError(f"{name} is an empty batch")
    plist = per_sample(params, x.shape[0], "params")
    sizes = {p.out_size for p in plist if isinstance(p, DegradationParams)}
    if len(sizes) > 1:
        raise ShapeError(f"params give different output sizes {sorted(sizes)}; they cannot be stacked")
    return plist


def degrade_batch(x: torch.Tensor, params: DegradationParams | Sequence[DegradationParams]) -> torch.Tensor:
    """Batch form of :func:`apply_degradation` (not differentiable).

    CPU tensors run :func:`apply_degradation` per sample (the shards' exact chain). CUDA tensors run the batched
    GPU path, :func:`rawsynth.degrade.gpu.degrade_batch_gpu` (same maths; a batched tensor model of libjpeg
    for the JPEG steps), and stay on the GPU.

    Args:
        x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any device.
        params: one :class:`DegradationParams` per sample (a single one is used for every sample), all for
            size ``(H, W)``.

    Returns:
        ``(B, 3, h, w)`` tensor on ``x``'s device with ``x``'s dtype (``(h, w) = params.out_size``).
    """
    plist = batch_params(x, params, "x")
    if x.is_cuda:
        from .gpu import degrade_batch_gpu

        return degrade_batch_gpu(x, plist)
    hwc = x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
    out = np.stack([apply_degradation(hwc[i], p) for i, p in enumerate(plist)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(device=x.device, dtype=x.dtype)


#: Deprecated names: ``quantize`` is :func:`quantize_u8` (8-bit sRGB; sensor DN quantisation is
#: :func:`rawsynth.mns.quantize`), ``_apply_degradation_u8`` is :func:`apply_degradation_u8`.
quantize = quantize_u8
_apply_degradation_u8 = apply_degradation_u8
