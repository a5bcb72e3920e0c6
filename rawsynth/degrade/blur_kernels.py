"""Blur kernels from recorded parameters, built by basicsr's deterministic constructors. See ``docs/degrade.md``."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .config import KernelType
from .params import KernelParams

__all__ = ["build_kernel"]


def build_kernel(kp: KernelParams, pad_to: int | None = 21) -> np.ndarray:
    """The kernel ``kp`` describes, computed in float64 by basicsr, zero-padded and cast to float32.

    Args:
        kp: the kernel's parameters.
        pad_to: odd side length to zero-pad to (``(pad_to - size) // 2`` each side, as Real-ESRGAN's
            ``np.pad``); ``None`` keeps the unpadded ``(size, size)`` kernel.

    Returns:
        ``(pad_to, pad_to)`` (or ``(size, size)``) float32 array summing to 1 (within float32 rounding);
        applied by correlation (``cv2.filter2D`` / ``F.conv2d``), centred.

    Raises:
        ConfigError: ``pad_to`` is even or smaller than ``kp.size``.
    """
    if not isinstance(kp, KernelParams):
        raise ConfigError(f"kp must be a KernelParams, got {type(kp).__name__}")
    k = kp.size
    if pad_to is not None and (isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < k
                               or pad_to % 2 == 0):
        raise ConfigError(f"pad_to must be an odd int >= the kernel size {k}, got {pad_to!r}")
    from ..compat.basicsr import degradations

    deg = degradations()
    kind = kp.kind
    if kind is KernelType.SINC:
        kernel = deg.circular_lowpass_kernel(kp.omega_c, k, pad_to=0)
    elif kind in (KernelType.ISO, KernelType.ANISO):
        kernel = deg.bivariate_Gaussian(k, kp.sigma_x, kp.sigma_y, kp.theta, isotropic=kind.isotropic)
    elif kind in (KernelType.GENERALIZED_ISO, KernelType.GENERALIZED_ANISO):
        kernel = deg.bivariate_generalized_Gaussian(k, kp.sigma_x, kp.sigma_y, kp.theta, kp.beta,
                                                    isotropic=kind.isotropic)
    elif kind in (KernelType.PLATEAU_ISO, KernelType.PLATEAU_ANISO):
        kernel = deg.bivariate_plateau(k, kp.sigma_x, kp.sigma_y, kp.theta, kp.beta, isotropic=kind.isotropic)
    else:  # pragma: no cover - every KernelType is handled above
        raise ConfigError(f"unknown kernel kind {kind!r}")
    if pad_to is not None and pad_to > k:
        p = (pad_to - k) // 2
        kernel = np.pad(kernel, ((p, p), (p, p)))
    return kernel.astype(np.float32)
