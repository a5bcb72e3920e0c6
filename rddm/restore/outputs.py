"""What ``rddm restore`` writes: the sRGB PNG (PTP with the file's own parameters) and, optionally, the linear image.
See ``docs/rddm.md``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rawsynth.errors import ConfigError
from rawsynth.io.atomic import atomic_output
from rawsynth.io.png16 import encode_png8, write_png16
from rawsynth.isp import ISPParams, process

__all__ = ["LINEAR_FORMATS", "OutputPaths", "output_paths", "to_srgb_array", "quantize", "write_srgb",
           "write_linear", "neutral_isp"]

#: ``save_linear`` file formats → extension.
LINEAR_FORMATS = {"png": ".png", "tiff": ".tif"}


@dataclass(frozen=True)
class OutputPaths:
    """Where one image's outputs go: ``srgb`` always, ``linear`` when asked for."""

    srgb: Path
    linear: Path | None = None

    def all(self) -> list[Path]:
        return [p for p in (self.srgb, self.linear) if p is not None]

    def exist(self) -> bool:
        """All of them exist (the image was finished by an earlier run)."""
        return all(p.is_file() for p in self.all())


def output_paths(out_dir: str | os.PathLike, name: str, save_linear: bool = False,
                 linear_format: str = "png") -> OutputPaths:
    """The :class:`OutputPaths` of image ``name`` in ``out_dir``."""
    if linear_format not in LINEAR_FORMATS:
        raise ConfigError(f"linear format must be one of {sorted(LINEAR_FORMATS)}, got {linear_format!r}")
    out = Path(out_dir)
    lin = out / "linear" / f"{name}{LINEAR_FORMATS[linear_format]}" if save_linear else None
    return OutputPaths(out / f"{name}.png", lin)


def neutral_isp() -> ISPParams:
    """Identity colour matrix and unit gains: the PTP of a file without colour metadata (unknown camera)."""
    return ISPParams.from_rgb2cam(np.eye(3), 1.0, 1.0, 1.0)


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Float image → ``uint8`` (``bits=8``) or ``uint16`` (``bits=16``): clip to ``[0, 1]``, scale, round half to
    even (in float64)."""
    if bits == 8:
        return np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if bits == 16:
        return np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    raise ConfigError(f"bits must be 8 or 16, got {bits!r}")


def to_srgb_array(linear: torch.Tensor, isp: ISPParams) -> np.ndarray:
    """``(1, 3, H, W)`` linear camera RGB → ``(H, W, 3)`` float64 sRGB in ``[0, 1]`` (PTP on the CPU in float64,
    so the result does not depend on the device)."""
    with torch.no_grad():
        srgb = process(linear.detach().to("cpu", torch.float64), isp)
    return srgb[0].permute(1, 2, 0).numpy()


def _hwc(linear: torch.Tensor) -> np.ndarray:
    return linear.detach()[0].permute(1, 2, 0).to("cpu", torch.float64).numpy()


def write_srgb(path: str | os.PathLike, linear: torch.Tensor, isp: ISPParams, bits: int = 8) -> None:
    """PTP ``linear`` ``(1, 3, H, W)`` with ``isp`` and write it atomically as an ``bits``-bit RGB PNG."""
    arr = quantize(to_srgb_array(linear, isp), bits)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        write_png16(path, arr)
        return
    data = encode_png8(arr)
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        f.write(data)


def write_linear(path: str | os.PathLike, linear: torch.Tensor) -> None:
    """Write ``linear`` ``(1, 3, H, W)`` clipped to ``[0, 1]`` as 16-bit RGB: a PNG (``.png``) or an
    uncompressed TIFF (``.tif``/``.tiff``), atomically."""
    arr = quantize(_hwc(linear), 16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        write_png16(path, arr)
    elif path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with atomic_output(path) as tmp:
            tifffile.imwrite(tmp, arr, photometric="rgb", compression=None, metadata=None, software=False)
    else:
        raise ConfigError(f"{path}: the linear image is written as .png or .tif, not {path.suffix!r}")
