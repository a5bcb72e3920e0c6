"""Explicit randomness: every generator derives from (seed, sample key, stream) and nothing else; the global RNGs
are never touched. See ``docs/architecture.md``."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["derive_seed", "numpy_rng", "torch_generator"]


def derive_seed(seed: int, key: str, stream: str = "") -> int:
    """A 63-bit seed from ``(seed, key, stream)`` via SHA-256 (stable across platforms and Python versions).

    Args:
        seed: the run seed (any int).
        key: the sample key (e.g. ``"000123_0"``).
        stream: a name separating independent streams of one sample (``"noise"``, ``"crop"``, ...).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    digest = hashlib.sha256(f"{int(seed)}\x1f{key}\x1f{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def numpy_rng(seed: int, key: str, stream: str = "") -> np.random.Generator:
    """The sample's ``numpy.random.Generator`` (PCG64) for ``stream``."""
    return np.random.default_rng(derive_seed(seed, key, stream))


def torch_generator(seed: int, key: str, stream: str = "", device: str | torch.device = "cpu") -> torch.Generator:
    """The sample's ``torch.Generator`` on ``device`` for ``stream`` (CPU and CUDA streams differ)."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, key, stream))
    return g
