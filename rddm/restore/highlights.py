"""Clipped highlights in camera files: what ``rddm restore`` does where the sensor saturated.

A sample at or above the white level (:meth:`rawsynth.io.RawImage.saturated`) has lost its value; nothing a
restorer outputs there is measured. Policies (``--highlights``):

``white`` (default)
    Every pixel of a 2×2 Bayer block holding a clipped sample is a clipped highlight: its restored linear camera
    RGB is raised, channel by channel, to at least the camera's white ``1 / wb_gains`` (the colour that white
    balance maps to ``(1, 1, 1)``). PTP then clips it to sRGB white, the way LibRaw's default highlight mode
    ("clip") renders it, instead of the coloured casts a partly clipped block would otherwise give
    (e.g. magenta where only green clipped).
``keep``
    The restorer's output is left as it is.

Only camera RAW and DNG inputs carry a mask; the synthetic inputs (benchmark PNG + JSON, shards) are clipped the
same way as their ground truth, so nothing is changed there.
"""

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
