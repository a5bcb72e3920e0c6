"""PSNR and SSIM, batched, equal to pyiqa's ``psnr`` / ``ssim`` / ``ssimc`` (0.1.x) but much faster.
See ``docs/benchmarks.md``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["gaussian_1d", "to_float", "y_channel", "psnr_batch", "ssim_batch", "fast_scores"]

_YCBCR_Y = (65.481, 128.553, 24.966)


def gaussian_1d(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)`` as pyiqa uses it: ``outer(g, g)`` is the
    2-D window (its ``eps``-relative cut-off removes nothing at size 11, σ 1.5). pyiqa stores that window in
    float32, so its weights sum to 1 only up to float32 rounding; ``g`` is scaled so that ``outer(g, g)`` has
    the same sum (the variances ``E[x²] − μ²`` are sensitive to it)."""
    m = (size - 1) / 2.0
    x = np.arange(-m, m + 1)
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g = g / g.sum()
    h = np.outer(g, g)
    h = h / h.sum()
    g = g * np.sqrt(h.astype(np.float32).astype(np.float64).sum())
    return torch.from_numpy(g).to(dtype)


def to_float(images: np.ndarray | torch.Tensor, device="cpu") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 → ``(N, 3, H, W)`` float32 in ``[0, 1]`` on ``device`` (division done on the device,
    as pyiqa's callers do: ``x / 255``)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 images, got {tuple(x.shape)} {x.dtype}")
    return x.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def y_channel(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in ``[0, 1]`` → ``(N, 1, H, W)`` BT.601 luma in ``[16/255, 235/255]``, computed like
    pyiqa's ``rgb2ycbcr`` (a float32 matmul with the 3×3 matrix, + 16, / 255)."""
    w = torch.tensor([[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]],
                     dtype=x.dtype, device=x.device)
    ycc = torch.matmul(x.permute(0, 2, 3, 1), w).permute(0, 3, 1, 2) \
        + torch.tensor([16, 128, 128], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (ycc / 255.0)[:, :1]


def _crop(x: torch.Tensor, c: int) -> torch.Tensor:
    return x[..., c:-c, c:-c] if c else x


def psnr_batch(x: torch.Tensor, y: torch.Tensor, y_only: bool, crop_border: int = 0) -> torch.Tensor:
    """Per-image PSNR (dB) of ``(N, 3, H, W)`` float32 ``[0, 1]`` batches: pyiqa ``psnr`` with
    ``test_y_channel=y_only, color_space='ycbcr'`` (data range 1, eps 1e-8)."""
    x, y = _crop(x, crop_border), _crop(y, crop_border)
    if y_only:
        x, y = y_channel(x), y_channel(y)
    mse = torch.mean((x - y) ** 2, dim=[1, 2, 3])
    return 10 * torch.log10(1.0 / (mse + 1e-8))


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable ``valid`` Gaussian filtering of ``(N, C, H, W)``: rows then columns, channels independent."""
    n, c, h, w = x.shape
    k = g.numel()
    x = x.reshape(n * c, 1, h, w)
    x = F.conv2d(x, g.view(1, 1, 1, k))
    x = F.conv2d(x, g.view(1, 1, k, 1))
    return x.reshape(n, c, h - k + 1, w - k + 1)


def ssim_batch(x: torch.Tensor, y: torch.Tensor, y_only: bool, crop_border: int = 0,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-image SSIM of ``(N, 3, H, W)`` float32 ``[0, 1]`` batches: pyiqa ``ssim`` (``y_only``, with
    ``color_space='ycbcr'``) or ``ssimc``; see ``docs/benchmarks.md``. Images must be at least 11×11 after the
    crop."""
    x, y = _crop(x, crop_border), _crop(y, crop_border)
    if y_only:
        x, y = y_channel(x), y_channel(y)
    # pyiqa: x * 255 rounded (half to even, like torch.round), then float64; integers are exact in float32 too
    x = (x * 255.0).round().to(dtype) - 128.0
    y = (y * 255.0).round().to(dtype) - 128.0
    g = gaussian_1d(dtype=dtype).to(x.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    d = x - y
    mu1, mu2, mu_d = _filter(x, g), _filter(y, g), _filter(d, g)
    # pyiqa's (2·μ1·μ2 + C1) / (μ1² + μ2² + C1) and (2·σ12 + C2) / (σ1² + σ2² + C2), rewritten with the
    # difference d = x − y (2·μ1·μ2 = μ1² + μ2² − μd², 2·σ12 = σ1² + σ2² − σd²): the same numbers, but the
    # float32 rounding of E[x²] − μ² now only touches the denominators, where it is negligible.
    s11 = _filter(x * x, g) - mu1 * mu1
    s22 = _filter(y * y, g) - mu2 * mu2
    sdd = _filter(d * d, g) - mu_d * mu_d
    mu1, mu2 = mu1 + 128.0, mu2 + 128.0
    den_l = mu1 * mu1 + mu2 * mu2 + c1
    den_c = s11 + s22 + c2
    cs = torch.relu((den_c - sdd) / den_c)
    ssim_map = (den_l - mu_d * mu_d) / den_l * cs
    return ssim_map.mean(dim=[1, 2, 3]).double()


def fast_scores(kind: str, y_only: bool, preds: list[np.ndarray], gts: list[np.ndarray], *, crop_border: int = 0,
                batch_size: int = 8, device="cpu", dtype: torch.dtype = torch.float32,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Per-image ``kind`` (``"psnr"`` or ``"ssim"``) of uint8 ``(H, W, 3)`` ``preds`` against ``gts``; consecutive
    images of equal size go through together, up to ``batch_size``. Returns float64 ``(N,)``."""
    if kind not in ("psnr", "ssim"):
        raise ValueError(f"kind must be 'psnr' or 'ssim', got {kind!r}")
    out = np.empty(len(preds), dtype=np.float64)
    i = 0
    with torch.no_grad():
        while i < len(preds):
            j = i + 1
            while j < len(preds) and j - i < batch_size and preds[j].shape == preds[i].shape:
                j += 1
            x = to_float(np.stack(preds[i:j]), device)
            y = to_float(np.stack(gts[i:j]), device)
            if kind == "psnr":
                v = psnr_batch(x, y, y_only, crop_border)
            else:
                v = ssim_batch(x, y, y_only, crop_border, dtype)
            out[i:j] = v.double().cpu().numpy()
            if on_batch:
                on_batch(j - i)
            i = j
    return out
