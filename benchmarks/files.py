"""Small file helpers shared by the benchmark stages: 8-bit PNG, JSON, hashing, versions. See ``docs/benchmarks.md``."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np

from rawsynth.errors import InputError
from rawsynth.io import atomic_output
from rawsynth.io.png16 import encode_png8
from rawsynth.shards import sha256_file

__all__ = ["encode_png8", "write_png8", "read_png8", "write_json", "read_json", "sha256_file", "versions",
           "to_uint8"]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` (or uint8) image → uint8 by rounding half to even after clipping."""
    if x.dtype == np.uint8:
        return x
    return np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png8(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Atomically write an 8-bit RGB PNG."""
    data = encode_png8(rgb)
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def read_png8(path: str | os.PathLike) -> np.ndarray:
    """Read any image rawsynth can read (:func:`rawsynth.io.read_srgb`) as ``(H, W, 3)`` uint8 RGB."""
    from rawsynth.io import read_srgb

    return to_uint8(read_srgb(path).image)


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as UTF-8 JSON with sorted keys (same object, same bytes)."""
    data = (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """Read a JSON object; a missing, unreadable or invalid file raises :class:`InputError` naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(p, "unreadable", e.strerror or str(e), hint=f"expected a {what}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(p, "invalid JSON", str(e), hint=f"expected a {what}") from None
    if not isinstance(obj, dict):
        raise InputError(p, "invalid JSON", f"top level is {type(obj).__name__}, not an object")
    return obj


def versions() -> dict:
    """Versions of the software that decides benchmark bytes and scores."""
    import torch

    from rawsynth import __version__

    out = {"rawsynth": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "torch": torch.__version__, "opencv": cv2.__version__}
    try:
        from importlib.metadata import version

        out["pyiqa"] = version("pyiqa")
    except Exception:  # noqa: BLE001 - pyiqa is optional (the bench extra)
        out["pyiqa"] = None
    return out
