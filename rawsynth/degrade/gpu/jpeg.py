"""The JPEG stage of the batched degradation: one call for a whole stage, any quality per sample.

Codecs (``jpeg=`` of :func:`~rawsynth.degrade.gpu.degrade_batch_gpu`):

* ``"tensor"`` — :func:`~rawsynth.degrade.gpu.tensor_jpeg.jpeg_tensor`: libjpeg's baseline 4:2:0 path in
  tensor maths, the whole stage in one batched call on the device, no host round trip (per-image quality in
  the same call). Within ~50 dB of libjpeg (``docs/gpu.md``). The default on CUDA.
* ``"libjpeg"`` — torchvision's libjpeg-turbo on the host: byte-identical files to the OpenCV encoder of the
  CPU chain (the shards' codec). The default on CPU tensors; on CUDA tensors the 8-bit images go to the host
  and back.
* ``"diffjpeg"`` — basicsr's ``DiffJPEG(differentiable=False)``, the tensor JPEG Real-ESRGAN trains with
  (through :mod:`rawsynth.compat.basicsr`, imported on first use): one batched call per stage, per-image
  quality, each image edge-replicated to a multiple of 16 first. 32–41 dB from libjpeg (``docs/gpu.md``).
* ``"nvjpeg"`` — torchvision's nvJPEG (CUDA only): one ``encode_jpeg`` call per distinct quality (its batched
  encoder takes one quality per call), ONE device-to-host copy of all the encoded bytes, ONE batched
  ``decode_jpeg``. It writes 4:4:4 chroma, not the shards' 4:2:0.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ...errors import ConfigError
from . import _common
from .tensor_jpeg import jpeg_tensor

__all__ = ["JPEG_CODECS", "resolve_codec", "jpeg_u8"]

#: ``jpeg=`` choices: ``auto`` is ``tensor`` on CUDA tensors and ``libjpeg`` on CPU tensors.
JPEG_CODECS = ("auto", "tensor", "diffjpeg", "nvjpeg", "libjpeg")


def resolve_codec(jpeg: str, device: torch.device) -> str:
    """The codec ``jpeg`` names for tensors on ``device`` (``auto`` resolved)."""
    if jpeg not in JPEG_CODECS:
        raise ConfigError(f"jpeg codec must be one of {JPEG_CODECS}, got {jpeg!r}")
    if jpeg == "auto":
        return "tensor" if device.type == "cuda" else "libjpeg"
    if jpeg == "nvjpeg" and device.type != "cuda":
        raise ConfigError(f"jpeg='nvjpeg' needs CUDA tensors, got a tensor on {device}; use jpeg='auto', "
                          "'tensor' or 'libjpeg'")
    return jpeg


def bytes_to_host(data: list[torch.Tensor]) -> list[torch.Tensor]:
    """Encoded JPEG byte tensors (on any device) as CPU tensors with ONE device-to-host copy (concatenated on
    the device, copied, split on the host) instead of one ``.cpu()`` per image."""
    if not data or all(d.device.type == "cpu" for d in data):
        return data
    lengths = [int(d.numel()) for d in data]
    return list(_common.to_host(torch.cat([d.reshape(-1) for d in data])).split(lengths))


@functools.lru_cache(maxsize=8)
def _diffjpeg_module(device: torch.device):
    from ...compat.basicsr import DiffJPEG

    return DiffJPEG(differentiable=False).to(device)


def _diffjpeg(u8: torch.Tensor, sizes, qualities: Sequence[int | None]) -> torch.Tensor:
    """basicsr's DiffJPEG on the samples with a quality: one call, each image edge-replicated to the batch's
    canvas rounded up to 16 (as libjpeg pads its MCUs), the float result rounded to 8 bits as Real-ESRGAN's
    ``clamp(round(255·x))``."""
    todo = [i for i, q in enumerate(qualities) if q is not None]
    sub = [sizes[i] for i in todo]
    n = len(todo)
    sh, sw = max(h for h, _ in sub), max(w for _, w in sub)
    hp, wp = -(-sh // 16) * 16, -(-sw // 16) * 16
    hs, ws = np.array([h for h, _ in sub])[:, None], np.array([w for _, w in sub])[:, None]
    ids, rows, cols, q = _common.upload([np.array(todo, dtype=np.int64), np.minimum(np.arange(hp), hs - 1),
                                         np.minimum(np.arange(wp), ws - 1),
                                         np.array([qualities[i] for i in todo], dtype=np.float32)], u8.device)
    x = u8.index_select(0, ids)[:, :, :sh, :sw]
    x = torch.gather(x, 2, rows[:, None, :, None].expand(n, 3, hp, sw))
    x = torch.gather(x, 3, cols[:, None, None, :].expand(n, 3, hp, wp))
    with _common.true_fp32():
        y = _diffjpeg_module(u8.device)(x.to(torch.float32) / 255.0, quality=q)
    y = _common.quantize(y.clamp(0.0, 1.0))[:, :, :sh, :sw]
    keep = ((torch.arange(sh, device=u8.device)[None, :, None] < rows[:, -1:, None] + 1)
            & (torch.arange(sw, device=u8.device)[None, None, :] < cols[:, None, -1:] + 1))
    out = u8.clone()
    out[:, :, :sh, :sw].index_copy_(0, ids, y * keep[:, None])
    return out


def jpeg_u8(u8: torch.Tensor, sizes, qualities: Sequence[int | None], codec: str) -> torch.Tensor:
    """JPEG round trip of the samples with a quality (``None``: unchanged), on a uint8 ragged batch.

    Host-side calls per stage: ``tensor`` and ``diffjpeg`` — one upload, nothing back; ``libjpeg``/``nvjpeg`` — one
    ``encode_jpeg`` call per distinct quality, one device-to-host copy (of the images for ``libjpeg`` on
    CUDA, of the encoded bytes for ``nvjpeg``) and ONE batched ``decode_jpeg`` call. Per image the bytes of
    the torchvision codecs are those of a single-image round trip."""
    todo = [i for i, q in enumerate(qualities) if q is not None]
    if not todo:
        return u8
    if codec == "tensor":
        return jpeg_tensor(u8, sizes, qualities)
    if codec == "diffjpeg":
        return _diffjpeg(u8, sizes, qualities)
    if codec not in ("nvjpeg", "libjpeg"):  # pragma: no cover - resolved before
        raise AssertionError(codec)
    from torchvision.io import decode_jpeg, encode_jpeg

    dev = u8.device
    src = u8 if codec == "nvjpeg" else _common.to_host(u8)
    by_q: dict[int, list[int]] = {}
    for i in todo:
        by_q.setdefault(int(qualities[i]), []).append(i)
    encoded: dict[int, torch.Tensor] = {}
    with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its codecs in favour of torchcodec
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        for q, ids in by_q.items():
            imgs = [src[i, :, :sizes[i][0], :sizes[i][1]].contiguous() for i in ids]
            encoded.update(zip(ids, encode_jpeg(imgs, quality=q)))
        data = bytes_to_host([encoded[i] for i in todo])
        decoded = decode_jpeg(data, device=dev if codec == "nvjpeg" else "cpu")
    out = src.clone()
    for i, d in zip(todo, decoded):
        out[i, :, :sizes[i][0], :sizes[i][1]] = d
    return out if out.device == dev else out.to(dev, non_blocking=True)
