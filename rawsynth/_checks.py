"""Small argument checks shared by the tensor ops (validate first, raise, never silently correct).
See ``docs/architecture.md``."""

from __future__ import annotations

import torch

from .errors import ShapeError


def check_bchw(x: torch.Tensor, name: str = "x", channels: int | None = None, floating: bool = True) -> None:
    """Raise :class:`ShapeError` unless ``x`` is a ``(B, C, H, W)`` tensor (with ``C == channels``)."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(f"{name} must have {channels} channel(s) in dim 1, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating-point tensor, got {x.dtype}; convert with x.float()")


def check_even(x: torch.Tensor, name: str = "x") -> None:
    """Raise :class:`ShapeError` unless the last two dims of ``x`` are even (whole 2×2 CFA blocks)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ShapeError(f"{name} must have even height and width (whole 2x2 Bayer blocks), got {h}x{w}; "
                         "crop at an even offset first")


def per_sample(values, batch: int, name: str) -> list:
    """Broadcast one value, or check a sequence of ``batch`` values, to a list of length ``batch``."""
    if isinstance(values, (list, tuple)):
        if len(values) != batch:
            raise ShapeError(f"{name}: got {len(values)} values for a batch of {batch}")
        return list(values)
    return [values] * batch
