"""Sensor encoding: normalised RAW ↔ integer DN with black and white level (below black survives, above white
clips). See ``docs/isp.md``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import per_sample
from .._config import ConfigMixin
from ..errors import ConfigError, ShapeError

__all__ = ["SensorParams", "quantize", "normalize"]


@dataclass(frozen=True)
class SensorParams(ConfigMixin):
    """Sensor encoding of one RAW image.

    Attributes:
        bit_depth: ADC bits (8–16); DN are stored in uint16 whatever the depth.
        black_level: DN of zero light.
        white_level: DN of saturation, ``black_level < white_level <= 2**bit_depth − 1``.
    """

    bit_depth: int = 12
    black_level: int = 256
    white_level: int = 4095

    def __post_init__(self):
        for name in ("bit_depth", "black_level", "white_level"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
                raise ConfigError(f"SensorParams.{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not 8 <= self.bit_depth <= 16:
            raise ConfigError(f"SensorParams.bit_depth must be in 8..16, got {self.bit_depth}")
        if not 0 <= self.black_level < self.white_level <= 2**self.bit_depth - 1:
            raise ConfigError(f"SensorParams needs 0 <= black_level < white_level <= 2**bit_depth - 1 "
                              f"({2**self.bit_depth - 1}), got black={self.black_level}, white={self.white_level}")

    @property
    def range(self) -> int:
        """``white_level − black_level``: DN per unit of normalised RAW."""
        return self.white_level - self.black_level



def _levels(sensor, x: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Black and white level as ``(B, 1, 1, 1)`` tensors (``(1, 1, 1, 1)`` for a single sensor)."""
    if isinstance(sensor, SensorParams):
        sensors = [sensor]
    elif isinstance(sensor, (list, tuple)) and all(isinstance(s, SensorParams) for s in sensor):
        sensors = per_sample(list(sensor), x.shape[0], "sensor")
    else:
        raise ShapeError(f"sensor must be a SensorParams or a sequence of them, got {type(sensor).__name__}")
    black = torch.tensor([s.black_level for s in sensors], dtype=dtype, device=x.device).view(-1, 1, 1, 1)
    white = torch.tensor([s.white_level for s in sensors], dtype=dtype, device=x.device).view(-1, 1, 1, 1)
    return black, white


def quantize(x: torch.Tensor, sensor: SensorParams | Sequence[SensorParams]) -> torch.Tensor:
    """Normalised RAW → integer DN.

    Args:
        x: ``(B, C, H, W)`` float normalised RAW (noise may take it below 0 or above 1).
        sensor: one :class:`SensorParams` or one per sample.

    Returns:
        ``torch.uint16`` tensor of the same shape: ``clip(round(x·(white − black) + black), 0, white)``
        (round half to even). Convert with ``.numpy()`` for I/O or ``.float()`` for maths.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        raise ShapeError(f"x must be a float (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    black, white = _levels(sensor, x, torch.float64)
    # in place on one float64 copy: the same operations (and results) as round(x·(white − black) + black)
    # clipped, about 10× faster than the out-of-place chain on a 512² mosaic
    with torch.no_grad():  # integer output: no gradient either way
        dn = x.to(torch.float64, copy=True)
        dn.mul_(white - black).add_(black).round_().clamp_min_(0.0)
        torch.minimum(dn, white, out=dn)
        return dn.to(torch.int32).to(torch.uint16)


def normalize(dn: torch.Tensor, sensor: SensorParams | Sequence[SensorParams], clip: bool = False,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer DN → normalised RAW ``(DN − black) / (white − black)``.

    Args:
        dn: ``(B, C, H, W)`` integer (uint16/int32/...) or float DN.
        sensor: one :class:`SensorParams` or one per sample.
        clip: clip to ``[0, 1]`` (drops the negative read-noise tail under black).
        dtype: floating dtype of the result.
    """
    if not isinstance(dn, torch.Tensor) or dn.ndim != 4:
        raise ShapeError(f"dn must be a (B, C, H, W) tensor, got {getattr(dn, 'shape', type(dn))}")
    black, white = _levels(sensor, dn, dtype)
    if dn.dtype == torch.uint16:
        dn = dn.to(torch.int32)
    x = (dn.to(dtype) - black) / (white - black)
    return x.clamp(0.0, 1.0) if clip else x
