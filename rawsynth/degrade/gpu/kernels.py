"""Blur kernels of a whole batch built on its device from their parameters (no per-kernel host work).

basicsr builds one kernel at a time in numpy (~0.1 ms each: 18 ms for the 173 kernels of a 64-sample batch,
on the host, in the hot path). :func:`build_kernels` packs the batch's :class:`~rawsynth.degrade.KernelParams`
into one ``(n, 8)`` float64 table (one upload), evaluates basicsr's closed forms for every kernel at once on
the device in float64 (Gaussian, generalized Gaussian, plateau with the same rotated covariance; the
circular sinc with ``torch.special.bessel_j1``), normalises each over its own ``size × size`` support and casts
to float32, centred in the batch's largest size (zero taps outside).

Agreement with basicsr (:func:`rawsynth.degrade.build_kernel`, float64 then float32): max abs difference
≤ :data:`KERNEL_TOL` (measured over 3,000 drawn kernels: 0 for the Gaussian, generalized and plateau kinds, bit
for bit; 2.7e-7 for sinc, from the Bessel function, ``tests/degrade/test_gpu_parts.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..config import KernelType
from ..params import KernelParams
from . import _common

__all__ = ["build_kernels", "KERNEL_TOL"]

#: Max abs difference of :func:`build_kernels` from basicsr's float32 kernels (asserted in the tests).
KERNEL_TOL = 5e-7

_FAMILY = {KernelType.ISO: 0, KernelType.ANISO: 0, KernelType.GENERALIZED_ISO: 1, KernelType.GENERALIZED_ANISO: 1,
           KernelType.PLATEAU_ISO: 2, KernelType.PLATEAU_ANISO: 2, KernelType.SINC: 3}


def _table(kps: Sequence[KernelParams]) -> np.ndarray:
    """``(n, 8)`` float64: family, size, inverse covariance ``(a, b, c)`` (``q = a·x² + 2b·xy + c·y²``), beta,
    omega_c, 0. The inverse is computed on the host exactly as basicsr does (``np.linalg.inv`` of
    ``R·diag(σx², σy²)·Rᵀ``), so the device evaluates the same quadratic form."""
    n = len(kps)
    t = np.zeros((n, 8), dtype=np.float64)
    t[:, 0] = [_FAMILY[kp.kind] for kp in kps]
    t[:, 1] = [kp.size for kp in kps]
    t[:, 6] = [kp.omega_c or 0.0 for kp in kps]
    g = [j for j, kp in enumerate(kps) if kp.omega_c is None]  # the Gaussian families, all at once
    if g:
        sx, sy, th = (np.array([getattr(kps[j], a) for j in g], dtype=np.float64)
                      for a in ("sigma_x", "sigma_y", "theta"))
        iso = np.array([kps[j].kind.isotropic for j in g])[:, None, None]
        d = np.zeros((len(g), 2, 2))
        d[:, 0, 0], d[:, 1, 1] = sx ** 2, sy ** 2
        c, s = np.cos(th), np.sin(th)
        u = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
        sig = np.where(iso, d, np.matmul(u, np.matmul(d, np.swapaxes(u, 1, 2))))  # basicsr: iso unrotated
        inv = np.linalg.inv(sig)
        t[g, 2], t[g, 3], t[g, 4] = inv[:, 0, 0], 0.5 * (inv[:, 0, 1] + inv[:, 1, 0]), inv[:, 1, 1]
        t[g, 5] = [1.0 if kps[j].beta is None else kps[j].beta for j in g]
    return t


def build_kernels(kps: Sequence[KernelParams], device: torch.device | str, size: int | None = None, *,
                  table: torch.Tensor | None = None) -> torch.Tensor:
    """The kernels ``kps`` describe, as basicsr builds them, for a whole batch at once on ``device``.

    Args:
        kps: ``n`` kernel parameter sets (any kinds and odd sizes).
        device: where to build them.
        size: odd side of the output (default: the largest ``kp.size``); each kernel sits centred in it.
        table: ``_table(kps)`` already on ``device`` (a caller that uploads it with other tables), or ``None``.

    Returns:
        ``(n, size, size)`` float32, each kernel summing to 1 over its own ``kp.size²`` support, zeros around
        it; applied by correlation, centred (as ``cv2.filter2D``).
    """
    n = len(kps)
    size = max(kp.size for kp in kps) if size is None else size
    (tab,) = _common.upload([_table(kps)], device) if table is None else (table,)
    r = size // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64, device=tab.device)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")  # basicsr: xy[..., 0] = column offset, [..., 1] = row offset
    fam, half = tab[:, 0, None, None], (tab[:, 1, None, None] - 1) / 2
    inside = (xx.abs() <= half) & (yy.abs() <= half)
    a, b, c = tab[:, 2, None, None], tab[:, 3, None, None], tab[:, 4, None, None]
    beta, omega = tab[:, 5, None, None], tab[:, 6, None, None]
    q = (a * xx + b * yy) * xx + (b * xx + c * yy) * yy  # g·Σ⁻¹·g, g = (x, y)
    gauss = torch.exp(-0.5 * q)
    general = torch.exp(-0.5 * torch.pow(q, beta))
    plateau = torch.reciprocal(torch.pow(q, beta) + 1)
    rad = torch.sqrt(xx * xx + yy * yy).expand(n, size, size)
    safe = torch.where(rad > 0, rad, torch.ones_like(rad))
    sinc = torch.where(rad > 0, omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe),
                       omega * omega / (4 * math.pi))
    k = torch.where(fam == 0, gauss, torch.where(fam == 1, general, torch.where(fam == 2, plateau, sinc)))
    k = torch.where(inside, k, torch.zeros_like(k))
    k = k / k.sum(dim=(1, 2), keepdim=True)
    return k.to(torch.float32)
