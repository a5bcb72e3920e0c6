"""Where a sample's HQ crop lies in its source: :class:`CropBox`, drawn by :func:`sample_crop` (stream
``"crop"``) and cut by :func:`apply_crop`. See ``docs/generate.md``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._config import ConfigMixin
from .errors import InputError
from .synth_config import SmallPolicy

__all__ = ["CropBox", "sample_crop", "apply_crop"]


@dataclass(frozen=True)
class CropBox(ConfigMixin):
    """Where a sample's HQ crop lies in its source image.

    ``top``/``left`` are even, so the crop keeps the source's pixel grid phase; ``pad_bottom``/``pad_right``
    are the reflect-padding added to a small source (``policy = "reflect"``).
    """

    top: int
    left: int
    height: int
    width: int
    policy: str = "skip"
    pad_bottom: int = 0
    pad_right: int = 0


def sample_crop(rng: np.random.Generator, size: tuple[int, int], crop: int, policy: SmallPolicy | str,
                name: str = "<image>") -> CropBox:
    """Draw a ``crop × crop`` box with even offsets inside an image of ``size = (H, W)``."""
    policy = SmallPolicy(policy)
    h, w = size
    pad_b, pad_r = max(crop - h, 0), max(crop - w, 0)
    if (pad_b or pad_r) and policy is SmallPolicy.SKIP:
        raise InputError(name, "too small", detail=f"{h}x{w} < crop {crop}x{crop}",
                         hint="use a smaller --crop or the 'reflect' small-image policy")
    top = 2 * int(rng.integers(0, (h + pad_b - crop) // 2 + 1))
    left = 2 * int(rng.integers(0, (w + pad_r - crop) // 2 + 1))
    return CropBox(top, left, crop, crop, policy.value, pad_b, pad_r)


def apply_crop(img: np.ndarray, box: CropBox) -> np.ndarray:
    """Cut ``box`` out of ``img`` (``(H, W, C)``), reflect-padding first if the box says so."""
    if box.pad_bottom or box.pad_right:
        img = np.pad(img, ((0, box.pad_bottom), (0, box.pad_right), (0, 0)), mode="reflect")
    return np.ascontiguousarray(img[box.top:box.top + box.height, box.left:box.left + box.width])
