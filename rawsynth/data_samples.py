"""Training samples of the shard reader (:mod:`rawsynth.data`): decode, Bayer-aware crop and flips, collate.

The sample format is described in :mod:`rawsynth.data`. Everything here is a pure function of its arguments
(the random crop draws from the generator it is given).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import ConfigError, ShapeError
from .mns.cfa import Pattern
from .mns.sensor import SensorParams, normalize
from .shards.fields import decode_sample

__all__ = ["decode_pair", "apply_crop_flip", "bayer_crop_flip", "collate"]



def decode_pair(sample: dict[str, bytes], name: str = "<sample>") -> dict:
    """Decode one shard sample into a training sample (tensors; see the module docstring).

    Args:
        sample: ``{"__key__": KEY, "raw.npy": bytes, "hq.npy": bytes, "meta.json": bytes, ...}`` (or the
            ``.png16`` / version-1 ``.png`` members).
        name: what to call the sample in error messages.

    Returns:
        ``{"key", "raw": (1, H, W) float32, "hq": (3, H, W) float32, "pattern": Pattern, "meta": dict}``.
        ``lq.png``/``gt.png``/``raw.dng`` are not decoded (use :func:`rawsynth.shards.decode_sample`).

    Raises:
        InputError: any reason of :func:`rawsynth.shards.decode_sample`.
    """
    d = decode_sample(sample, name)
    meta = d["meta"]
    sensor = SensorParams.from_dict(meta["sensor"])
    dn = torch.from_numpy(d["raw_dn"].astype(np.int32))[None, None]
    raw = normalize(dn, sensor, clip=False, dtype=torch.float32)[0]
    hq = torch.from_numpy(d["hq"]).permute(2, 0, 1).contiguous()
    return {"key": d["key"], "raw": raw, "hq": hq, "pattern": Pattern(meta["pattern"]), "meta": meta}


def _check_pair(sample: dict) -> tuple[str, int, int]:
    if not isinstance(sample, dict) or not {"raw", "hq", "pattern", "meta"} <= set(sample):
        raise ShapeError("expected a training sample dict with 'raw', 'hq', 'pattern' and 'meta' (from decode_pair)")
    key, raw, hq = sample.get("key", "<sample>"), sample["raw"], sample["hq"]
    if not isinstance(raw, torch.Tensor) or raw.ndim != 3 or raw.shape[0] != 1:
        raise ShapeError(f"sample {key}: raw must be a (1, H, W) tensor, got {getattr(raw, 'shape', type(raw))}")
    if not isinstance(hq, torch.Tensor) or hq.ndim != 3 or hq.shape[0] != 3 or hq.shape[1:] != raw.shape[1:]:
        raise ShapeError(f"sample {key}: hq must be a (3, H, W) tensor the size of raw {tuple(raw.shape)}, got "
                         f"{getattr(hq, 'shape', type(hq))}")
    return key, raw.shape[1], raw.shape[2]


def apply_crop_flip(sample: dict, top: int, left: int, height: int, width: int, hflip: bool = False,
                    vflip: bool = False) -> dict:
    """Crop then flip a training sample, updating its Bayer pattern (a pure function: no randomness).

    ``raw`` and ``hq`` get exactly the same crop and flips. The crop may start at any offset: the pattern
    becomes ``pattern.shifted(top, left)``; a horizontal flip then gives ``.hflipped(width)``, a vertical
    flip ``.vflipped(height)``. The box and flips are appended to ``meta["augment"]`` (a new list; the input
    sample and its meta are not modified).

    Args:
        sample: a training sample (:func:`decode_pair`).
        top: the crop's top row, ``>= 0``.
        left: the crop's left column, ``>= 0``.
        height: the crop's height, ``>= 1``, inside the sample.
        width: the crop's width, ``>= 1``, inside the sample.
        hflip: flip left–right after cropping.
        vflip: flip top–bottom after cropping.

    Returns:
        A new sample with contiguous ``(1, height, width)`` raw and ``(3, height, width)`` hq.

    Raises:
        ShapeError: not a training sample, or the box leaves the image.
    """
    key, h, w = _check_pair(sample)
    box = [int(v) for v in (top, left, height, width)]
    if not (box[0] >= 0 and box[1] >= 0 and box[2] >= 1 and box[3] >= 1 and box[0] + box[2] <= h
            and box[1] + box[3] <= w):
        raise ShapeError(f"sample {key}: crop box (top={top}, left={left}, {height}x{width}) is outside its "
                         f"{h}x{w} image")
    top, left, height, width = box
    pattern = Pattern(sample["pattern"]).shifted(top, left)
    raw = sample["raw"][:, top:top + height, left:left + width]
    hq = sample["hq"][:, top:top + height, left:left + width]
    if hflip:
        raw, hq, pattern = raw.flip(-1), hq.flip(-1), pattern.hflipped(width)
    if vflip:
        raw, hq, pattern = raw.flip(-2), hq.flip(-2), pattern.vflipped(height)
    meta = dict(sample["meta"])
    meta["augment"] = [*meta.get("augment", []), {"top": top, "left": left, "height": height, "width": width,
                                                   "hflip": bool(hflip), "vflip": bool(vflip)}]
    return {**sample, "raw": raw.contiguous(), "hq": hq.contiguous(), "pattern": pattern, "meta": meta}


def bayer_crop_flip(sample: dict, size: int | None, rng: np.random.Generator, hflip: bool = True,
                    vflip: bool = True) -> dict:
    """Random ``size × size`` crop at any offset, then random flips, with the Bayer pattern kept right.

    Draws, in this order from ``rng``: ``top ~ U{0..H−size}``, ``left ~ U{0..W−size}``, then (if enabled)
    a fair coin for the horizontal and one for the vertical flip; then calls :func:`apply_crop_flip`.

    Args:
        sample: a training sample (:func:`decode_pair`).
        size: crop side, ``1 <= size <= min(H, W)``; ``None`` keeps the whole image (flips only).
        rng: the generator to draw from (e.g. ``rawsynth.rng.numpy_rng(seed, key, "augment")``).
        hflip: allow horizontal flips.
        vflip: allow vertical flips.

    Raises:
        ShapeError: not a training sample, or ``size`` larger than the image.
        ConfigError: ``size`` not a positive int, ``rng`` not a ``numpy.random.Generator``.
    """
    key, h, w = _check_pair(sample)
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (e.g. rawsynth.rng.numpy_rng(seed, key)), got "
                          f"{type(rng).__name__}")
    if size is None:
        top, left, ch, cw = 0, 0, h, w
    else:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"crop size must be a positive int or None, got {size!r}")
        if size > h or size > w:
            raise ShapeError(f"sample {key}: crop {size}x{size} is larger than its {h}x{w} image; use a smaller "
                             "crop or shards with larger samples")
        top, left, ch, cw = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size, size
    hf = bool(rng.integers(2)) if hflip else False
    vf = bool(rng.integers(2)) if vflip else False
    return apply_crop_flip(sample, top, left, ch, cw, hf, vf)


def collate(samples: Sequence[dict]) -> dict:
    """Stack training samples into a batch.

    Returns:
        ``{"raw": (B, 1, h, w), "hq": (B, 3, h, w), "pattern": list[Pattern], "meta": list[dict],
        "key": list[str]}``, plus ``"__stream__"`` (the last sample's) when the samples carry one.

    Raises:
        ShapeError: an empty batch, or samples of different sizes (crop them to one size first).
    """
    samples = list(samples)
    if not samples:
        raise ShapeError("collate: empty batch")
    sizes = [_check_pair(s)[1:] for s in samples]
    if len(set(sizes)) > 1:
        detail = ", ".join(f"{s.get('key', '?')}: {hw[0]}x{hw[1]}" for s, hw in zip(samples, sizes))
        raise ShapeError(f"collate: samples differ in size ({detail}); pass crop=... to make_dataset")
    out = {"raw": torch.stack([s["raw"] for s in samples]), "hq": torch.stack([s["hq"] for s in samples]),
           "pattern": [Pattern(s["pattern"]) for s in samples], "meta": [s["meta"] for s in samples],
           "key": [s.get("key") for s in samples]}
    if "__stream__" in samples[-1]:  # make_dataset(positions=True): the reader's state after the batch
        out["__stream__"] = samples[-1]["__stream__"]
    return out
