"""Clipped highlights in camera files: what ``rddm restore`` does where the sensor saturated. See ``docs/rddm.md``."""

from __future__ import annotations

import numpy as np
import torch

from rawsynth.isp import ISPParams

from ..errors import ConfigError

__all__ = ["HIGHLIGHT_POLICIES", "block_mask", "apply_highlight_policy"]

HIGHLIGHT_POLICIES = ("white", "keep")


def block_mask(saturated: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose 2×2 Bayer block holds a ``saturated`` sample (``H``, ``W`` even)."""
    h, w = saturated.shape
    blocks = saturated.reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))
    return np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)


def apply_highlight_policy(linear: torch.Tensor, saturated: np.ndarray | None, isp: ISPParams,
                           policy: str = "white") -> torch.Tensor:
    """Apply ``policy`` to the restored ``linear`` ``(1, 3, H, W)`` camera RGB (a new tensor when changed).

    Args:
        linear: the restorer's output, float.
        saturated: ``(H, W)`` bool clipped samples of the input mosaic, or ``None`` (nothing to do).
        isp: the image's PTP parameters (its white balance defines the camera white).
        policy: one of :data:`HIGHLIGHT_POLICIES`.
    """
    if policy not in HIGHLIGHT_POLICIES:
        raise ConfigError(f"unknown highlight policy {policy!r}", fix=f"use one of {', '.join(HIGHLIGHT_POLICIES)}")
    if policy == "keep" or saturated is None or not saturated.any():
        return linear
    if saturated.shape != tuple(linear.shape[-2:]):
        raise ConfigError(f"saturation mask {saturated.shape} does not match the image {tuple(linear.shape[-2:])}")
    white = torch.tensor([1.0 / g for g in isp.wb_gains], dtype=linear.dtype)[None, :, None, None]
    mask = torch.from_numpy(block_mask(saturated))[None, None]
    return torch.where(mask, torch.maximum(linear, white), linear)
