"""Shared pieces of the batched degradation: the ragged batch, true-float32 maths, and the ONLY two ways data
crosses between host and device (so the host-side call counts per batch can be asserted).

* :func:`upload` packs a stage's host tables (indices, weights, kernels, masks) into one pinned byte buffer
  and copies it to the device with ONE ``non_blocking`` copy (no stream synchronisation).
* :func:`to_host` is the one device-to-host copy (a synchronisation on CUDA); :class:`DeferredCheck` reads a
  device flag through a pinned buffer at an *early* CUDA event, so the host waits for the flag's reduction,
  not for the work queued after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Ragged", "upload", "to_host", "DeferredCheck", "true_fp32", "precision_knobs", "quantize", "to_float"]


@dataclass
class Ragged:
    """Sample ``i`` is ``data[i, :, :h_i, :w_i]``; everything else is 0."""

    data: torch.Tensor  # (B, C, H_max, W_max) float32
    sizes: list[tuple[int, int]]


def upload(arrays: Sequence[np.ndarray], device: torch.device | str) -> list[torch.Tensor]:
    """Host arrays as tensors on ``device``, all with ONE host-to-device copy.

    The arrays are packed, each at an 8-byte aligned offset, into one pinned uint8 buffer, copied with
    ``non_blocking=True`` (the caching host allocator keeps the buffer alive until the copy is done) and cut
    into views of the original dtypes and shapes. On the CPU the arrays are wrapped without a copy.

    Args:
        arrays: numpy arrays of any numeric dtype torch supports (int64, float32, bool, ...).
        device: the target device.

    Returns:
        One tensor per array, same dtype and shape, on ``device``.
    """
    device = torch.device(device)
    arrays = [np.ascontiguousarray(a) for a in arrays]
    if device.type == "cpu":
        return [torch.from_numpy(a) for a in arrays]
    offsets, total = [], 0
    for a in arrays:
        offsets.append(total)
        total += -(-a.nbytes // 8) * 8
    host = torch.empty(max(total, 8), dtype=torch.uint8, pin_memory=torch.cuda.is_available())
    hv = host.numpy()
    for a, o in zip(arrays, offsets):
        hv[o:o + a.nbytes] = a.reshape(-1).view(np.uint8)
    dev = host.to(device, non_blocking=True)
    out = []
    for a, o in zip(arrays, offsets):
        t = torch.from_numpy(a[:0]).dtype
        out.append(dev[o:o + a.nbytes].view(t).view(a.shape))
    return out


def to_host(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the CPU: the one blocking device-to-host copy of the path (identity for CPU tensors)."""
    return t if t.device.type == "cpu" else t.cpu()


class DeferredCheck:
    """A device bool flag read later without draining the stream.

    On CUDA the flag is copied ``non_blocking`` into pinned memory right away and an event is recorded after
    that copy; :meth:`value` waits on *that* event only, so the host does not wait for the work queued after
    it (the GPU keeps running the chain). On the CPU the flag is read through :func:`to_host`.
    """

    def __init__(self, flag: torch.Tensor):
        self._flag = flag
        self._event = None
        if flag.device.type == "cuda":
            self._host = torch.empty((), dtype=torch.bool, pin_memory=True)
            self._host.copy_(flag, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(flag.device))

    def value(self) -> bool:
        """The flag (blocks until its early event on CUDA)."""
        if self._event is None:
            return bool(to_host(self._flag).numpy())
        self._event.synchronize()
        return bool(self._host.numpy())


def precision_knobs() -> list[tuple[object, str, object]]:
    """``(namespace, attribute, value for true float32)`` of the TF32 switches of this torch.

    torch >= 2.9 has the ``fp32_precision`` API (``"ieee"`` / ``"tf32"`` / ``"none"``, per backend and per
    operation) and raises when a program mixes it with the legacy ``allow_tf32`` flags, so the new API is used
    wherever it exists and the legacy flags only on older torch."""
    mm, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(mm, "fp32_precision"):
        knobs = [(mm, "fp32_precision", "ieee")]
        if conv is not None and hasattr(conv, "fp32_precision"):
            knobs.append((conv, "fp32_precision", "ieee"))
        return knobs
    return [(mm, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def true_fp32():
    """No TF32 in matmuls and cuDNN convolutions (a 10-bit mantissa would flip 8-bit roundings); the previous
    settings are restored after."""
    knobs = precision_knobs()
    before = [getattr(ns, attr) for ns, attr, _ in knobs]
    try:
        for ns, attr, value in knobs:
            setattr(ns, attr, value)
        yield
    finally:
        for (ns, attr, _), old in zip(knobs, before):
            setattr(ns, attr, old)


def quantize(data: torch.Tensor) -> torch.Tensor:
    """Real-ESRGAN's ``clamp(round(x·255), 0, 255)`` (round half to even) as uint8."""
    return (data * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def to_float(u8: torch.Tensor) -> torch.Tensor:
    """uint8 levels ``k`` as float32 ``k / 255``."""
    return u8.to(torch.float32) / 255.0
