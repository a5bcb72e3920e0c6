"""Tiled processing with overlap and feathered blending, so images of any size fit in a GPU's memory.
See ``docs/rddm.md``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rawsynth.errors import ShapeError

from ..errors import ConfigError

__all__ = ["Tiling", "tile_starts", "ramp", "tile_weights", "tiled_apply"]


@dataclass(frozen=True)
class Tiling:
    """How to cut a grid into tiles (all sizes in grid units).

    Attributes:
        tile: side of a tile (a multiple of ``align``).
        overlap: minimum overlap of neighbouring tiles; ``0 <= 2·margin < overlap < tile`` when the grid needs
            more than one tile.
        margin: the dead margin of the blending weights (see ``docs/rddm.md``): at least the receptive
            radius of the network for an exact result with local networks.
        align: tile starts and sizes are multiples of this (e.g. the UNet's down-sampling factor).
    """

    tile: int
    overlap: int
    margin: int = 0
    align: int = 1

    def __post_init__(self):
        for name in ("tile", "overlap", "margin", "align"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"Tiling.{name} must be an integer, got {v!r}")
        if self.align < 1 or self.tile < self.align or self.tile % self.align:
            raise ConfigError(f"the tile ({self.tile}) must be a positive multiple of {self.align} grid units",
                              fix="choose a --tile that is a multiple of the model's latent grid")
        if not 0 <= 2 * self.margin < self.overlap < self.tile:
            raise ConfigError(f"need 0 <= 2*margin < overlap < tile, got margin={self.margin}, "
                              f"overlap={self.overlap}, tile={self.tile} (grid units)",
                              fix="use an overlap smaller than the tile (e.g. a quarter of it)")


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of the fewest tiles of side ``tile`` that cover ``[0, size)`` with at least ``overlap``
    between neighbours, spread evenly; the first starts at 0, the last ends at ``size``.

    Args:
        size: grid length (a multiple of ``align``).
        tile: tile side (a multiple of ``align``, ``> overlap``).
        overlap: minimum overlap.
        align: every start is a multiple of it.

    Returns:
        Sorted starts; ``[0]`` when ``size <= tile``.

    Example:
        >>> tile_starts(10, 4, 1)
        [0, 3, 6]
    """
    if size % align or tile % align:
        raise ShapeError(f"size {size} and tile {tile} must be multiples of align {align}")
    if size <= tile:
        return [0]
    g, t, o = size // align, tile // align, -(-overlap // align)
    if t <= o:
        raise ConfigError(f"tile {tile} must exceed the overlap {overlap} rounded up to a multiple of {align}")
    n = max(2, math.ceil((g - o) / (t - o)))
    return [(i * (g - t)) // (n - 1) * align for i in range(n)]


def ramp(d: torch.Tensor, overlap: int, margin: int) -> torch.Tensor:
    """Blending weight at distance ``d`` (grid units, float) from an interior tile edge: 0 up to ``margin``,
    a raised cosine up to ``overlap − margin``, then 1. ``ramp(d) + ramp(overlap − d) == 1``."""
    u = ((d - margin) / (overlap - 2 * margin)).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * u)


def _axis_weights(start: int, length: int, size: int, tiling: Tiling, scale: int) -> torch.Tensor:
    p = (torch.arange(length * scale, dtype=torch.float64) + 0.5) / scale  # pixel centres in grid units
    w = torch.ones_like(p)
    if start > 0:
        w = w * ramp(p, tiling.overlap, tiling.margin)
    if start + length < size:
        w = w * ramp(length - p, tiling.overlap, tiling.margin)
    return w


def tile_weights(start: tuple[int, int], shape: tuple[int, int], grid: tuple[int, int], tiling: Tiling,
                 scale: int = 1) -> torch.Tensor:
    """The ``(shape[0]·scale, shape[1]·scale)`` float64 blending weights of the tile at ``start`` (grid units)
    in a grid of size ``grid``, at ``scale`` output pixels per grid unit (separable: rows × columns)."""
    wy = _axis_weights(start[0], shape[0], grid[0], tiling, scale)
    wx = _axis_weights(start[1], shape[1], grid[1], tiling, scale)
    return wy[:, None] * wx[None, :]


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tiling: Tiling | None, *,
                in_scale: int = 1, out_scale: int = 1, tile_batch: int = 1,
                out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Apply ``fn`` tile by tile and blend (see ``docs/rddm.md``).

    Args:
        fn: maps ``(n·B, C, h·in_scale, w·in_scale)`` to ``(n·B, C', h·out_scale, w·out_scale)``; the input
            holds ``n <= tile_batch`` tiles of the same size, tile-major (the ``B`` samples of the first tile,
            then those of the second, ...), so per-sample arguments are repeated ``n`` times.
        x: ``(B, C, H, W)`` with ``H`` and ``W`` multiples of ``in_scale·tiling.align``.
        tiling: the tiling in grid units, or ``None`` to call ``fn(x)`` once.
        in_scale: input pixels per grid unit.
        out_scale: output pixels per grid unit.
        tile_batch: tiles per call of ``fn``.
        out_dtype: dtype of the blended result (accumulated in it; float32 by default whatever ``fn`` computes
            in).

    Returns:
        ``(B, C', H/in_scale·out_scale, W/in_scale·out_scale)`` on ``x``'s device.
    """
    if x.ndim != 4:
        raise ShapeError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    if tile_batch < 1:
        raise ConfigError(f"tile_batch must be >= 1, got {tile_batch}")
    b, _, h, w = x.shape
    align = tiling.align if tiling is not None else 1
    if h % (in_scale * align) or w % (in_scale * align):
        raise ShapeError(f"x is {h}x{w}; H and W must be multiples of {in_scale * align} (pad first)")
    gh, gw = h // in_scale, w // in_scale
    if tiling is None or (gh <= tiling.tile and gw <= tiling.tile):
        return fn(x).to(out_dtype)
    ys = tile_starts(gh, tiling.tile, tiling.overlap, align)
    xs = tile_starts(gw, tiling.tile, tiling.overlap, align)
    th, tw = min(tiling.tile, gh), min(tiling.tile, gw)
    tiles = [(y, x0) for y in ys for x0 in xs]
    out = wsum = None
    for i in range(0, len(tiles), tile_batch):
        group = tiles[i:i + tile_batch]
        xt = torch.cat([x[:, :, y * in_scale:(y + th) * in_scale, x0 * in_scale:(x0 + tw) * in_scale]
                        for y, x0 in group])
        yt = fn(xt)
        if yt.shape[0] != xt.shape[0] or yt.shape[2:] != (th * out_scale, tw * out_scale):
            raise ShapeError(f"fn mapped a {tuple(xt.shape)} tile batch to {tuple(yt.shape)}; expected "
                             f"({xt.shape[0]}, C, {th * out_scale}, {tw * out_scale})")
        if out is None:
            out = torch.zeros(b, yt.shape[1], gh * out_scale, gw * out_scale, dtype=out_dtype, device=x.device)
            wsum = torch.zeros(1, 1, gh * out_scale, gw * out_scale, dtype=out_dtype, device=x.device)
        for j, (y, x0) in enumerate(group):
            wt = tile_weights((y, x0), (th, tw), (gh, gw), tiling, out_scale).to(out.device, out_dtype)
            sy = slice(y * out_scale, (y + th) * out_scale)
            sx = slice(x0 * out_scale, (x0 + tw) * out_scale)
            out[:, :, sy, sx] += yt[j * b:(j + 1) * b].to(out_dtype) * wt
            wsum[:, :, sy, sx] += wt
    if not bool((wsum > 0).all()):  # pragma: no cover - guaranteed by Tiling's checks and tile_starts
        raise ShapeError("internal error: a pixel is covered by no tile with non-zero weight")
    return out / wsum
