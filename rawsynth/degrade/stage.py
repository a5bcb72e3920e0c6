"""The degradation stage of the chain as one op, :func:`degrade`, for one image or a batch on any device; it picks
the CPU chain or the batched GPU path inside. See ``docs/degrade.md``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError, ShapeError
from .gpu import BLUR_METHODS, JPEG_CODECS, degrade_batch_gpu
from .ops import apply_degradation_u8, batch_params
from .params import DegradationParams

__all__ = ["DEGRADE_BACKENDS", "degrade"]

#: ``backend=`` choices of :func:`degrade`.
DEGRADE_BACKENDS = ("auto", "reference", "batched")


def _reference_u8(u8_hwc: np.ndarray, params: DegradationParams) -> np.ndarray:
    # apply_degradation's 8-bit result as uint8 (it is exactly k / 255 as float)
    return apply_degradation_u8(np.divide(u8_hwc, np.float32(255.0), dtype=np.float32), params)


def _degrade_tensor(srgb: torch.Tensor, params, backend: str, blur: str, jpeg: str) -> torch.Tensor:
    plist = batch_params(srgb, params, "srgb", floating=False)
    if backend == "auto":
        backend = "batched" if srgb.is_cuda else "reference"
    if backend == "batched":
        x = srgb.to(torch.float32) / 255.0  # = the reference's u8 / 255 in float32
        return degrade_batch_gpu(x, plist, blur=blur, jpeg=jpeg, as_uint8=True)
    hwc = srgb.detach().cpu().permute(0, 2, 3, 1).numpy()
    out = np.stack([_reference_u8(hwc[i], p) for i, p in enumerate(plist)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(srgb.device)


def degrade(srgb: np.ndarray | torch.Tensor, params: DegradationParams | Sequence[DegradationParams], *,
            backend: str = "auto", blur: str = "auto", jpeg: str = "auto") -> np.ndarray | torch.Tensor:
    """The detail degradation (Real-ESRGAN's two orders without noise) of 8-bit sRGB, on the 8-bit grid.

    Args:
        srgb: one ``(H, W, 3)`` uint8 numpy image, or a ``(B, 3, H, W)`` uint8 tensor on any device.
        params: the image's :class:`DegradationParams` (:func:`~rawsynth.degrade.sample_degradation` for
            ``(H, W)``), or one per sample of a batch (one is used for all).
        backend: ``"auto"`` (``"batched"`` for CUDA tensors, ``"reference"`` otherwise), ``"reference"`` (the CPU
            chain, :func:`~rawsynth.degrade.ops.apply_degradation_u8`: OpenCV blur/resize and libjpeg, the
            shards' exact bytes; a CUDA batch makes a round trip through the host) or ``"batched"``
            (:func:`~rawsynth.degrade.gpu.degrade_batch_gpu`: the batch on its device, same maths, nvJPEG on
            CUDA unless ``jpeg="libjpeg"``; tensors only).
        blur: the batched path's blur method (``"auto"``, ``"conv"``, ``"fft"``).
        jpeg: the batched path's JPEG codec (``"auto"``, ``"nvjpeg"``, ``"libjpeg"``).

    Returns:
        uint8 in ``srgb``'s form (numpy ``(h, w, 3)`` or a ``(B, 3, h, w)`` tensor on its device), ``(h, w) =
        params.out_size`` (``(H, W)`` with ``resize_back``).

    Raises:
        ShapeError: wrong type, dtype, shape or size for the params. ConfigError: unknown backend/blur/jpeg.
    """
    if backend not in DEGRADE_BACKENDS:
        raise ConfigError(f"degrade: unknown backend {backend!r}; use one of {list(DEGRADE_BACKENDS)}")
    if blur not in BLUR_METHODS:
        raise ConfigError(f"blur must be one of {BLUR_METHODS}, got {blur!r}")
    if jpeg not in JPEG_CODECS:
        raise ConfigError(f"jpeg must be one of {JPEG_CODECS}, got {jpeg!r}")
    if isinstance(srgb, np.ndarray):
        if srgb.dtype != np.uint8 or srgb.ndim != 3 or srgb.shape[2] != 3:
            raise ShapeError(f"srgb must be an (H, W, 3) uint8 image, got {srgb.dtype} {srgb.shape}")
        if backend == "batched":
            raise ConfigError("degrade: backend='batched' takes a (B, 3, H, W) tensor; use 'reference' for a "
                              "numpy image")
        return _reference_u8(srgb, params)
    if not isinstance(srgb, torch.Tensor) or srgb.dtype != torch.uint8:
        raise ShapeError(f"srgb must be a uint8 numpy image or tensor, got {getattr(srgb, 'dtype', type(srgb))}")
    return _degrade_tensor(srgb, params, backend, blur, jpeg)
