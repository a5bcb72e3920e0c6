"""The tiled one-step restoration of one RAW mosaic: pad → encoder tiles → UNet tiles → decoder tiles → crop.
See ``docs/rddm.md``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rawsynth.errors import ShapeError
from rawsynth.mns import Pattern

from ..errors import ConfigError
from .groupnorm import (NORM_STATS, downscale_latent, downscale_mosaic, groupnorm_layers, owned_boxes,
                        pooled_tile_fn, record_groupnorm_stats, with_groupnorm_stats)
from .tiling import Tiling, tiled_apply

__all__ = ["Restorer", "latent_multiple", "reflect_pad", "DEFAULT_TILE", "DEFAULT_OVERLAP", "DEFAULT_NORM_STATS",
           "DEFAULT_STATS_SIZE"]

#: Default tile side in pixels (SD-2.1's 512² training resolution, 64² latents).
DEFAULT_TILE = 512
#: Overlap of neighbouring tiles in pixels for the default tile (a quarter of it; 16 latent pixels for SD).
DEFAULT_OVERLAP = 128
#: Default source of the GroupNorm statistics of tiled passes: ``tile``, decided by measurement (``docs/rddm.md``:
#: SD-2.1-size encoder on a noisy ISO-3200 mosaic, PSNR vs untiled 40.0 dB for ``tile``, 15.4 dB for ``global``
#: from a binned copy, 50.7 dB for ``pooled``, which needs all tiles in memory).
DEFAULT_NORM_STATS = "tile"
#: Default longest side in pixels of the downscaled copy the ``global`` statistics are taken from (at least the
#: tile).
DEFAULT_STATS_SIZE = 1024


def latent_multiple(model) -> int:
    """Latent sizes the model's UNet takes are multiples of this: ``model.latent_multiple`` if the model says,
    else ``model.size_multiple / latent_factor`` (:class:`~rddm.models.rddm.RDDM`: 8 for SD-2.1), else
    ``2**(levels − 1)`` of ``model.unet``, else 1."""
    m = getattr(model, "latent_multiple", None)
    if m is not None:
        return int(m)
    size = getattr(model, "size_multiple", None)
    if size is not None and int(size) % int(model.latent_factor) == 0:
        return int(size) // int(model.latent_factor)
    unet = getattr(model, "unet", None)
    blocks = getattr(getattr(unet, "config", None), "block_out_channels", None)
    return 2 ** (len(blocks) - 1) if blocks else 1


def reflect_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom and right to multiples of ``multiple`` by mirroring about the last row
    and column (``numpy.pad(mode="reflect")``; repeated for pads larger than the image).

    Row ``H − 1 + k`` copies row ``H − 1 − k``: same parity, so a Bayer mosaic keeps its CFA layout.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    while ph or pw:  # F.pad's reflect needs pad < size: grow in steps
        dh, dw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if (ph and dh <= 0) or (pw and dw <= 0):
            raise ShapeError(f"cannot reflect-pad a {h}x{w} image (need at least 2 pixels per side)")
        x = F.pad(x, (0, dw, 0, dh), mode="reflect")
        ph, pw = ph - dh, pw - dw
    return x


class Restorer:
    """Tiled RDDM inference on single mosaics of any size (see ``docs/rddm.md``).

    Args:
        model: the restorer (``encode``/``denoise``/``decode``/``latent_factor``), in eval mode on its device.
        tile: tile side in pixels (rounded down to the latent grid); ``0`` or ``None``: no tiling.
        overlap: overlap of neighbouring tiles in pixels (rounded up to whole latent pixels); default a quarter
            of the tile (:data:`DEFAULT_OVERLAP` for the default tile).
        margin: dead margin of the blending weights in latent pixels (default ``overlap/4``; see
            :mod:`rddm.restore.tiling`).
        tile_batch: tiles per network call (more is faster on a GPU, and uses more memory).
        dtype: dtype the networks run in (their weights must already be in it); inputs are cast to it and the
            blending is done in float32.
        norm_stats: GroupNorm statistics of tiled passes, ``"global"`` (shared by every tile, from one untiled
            pass on a downscaled copy of the stage's input), ``"tile"`` (each tile its own) or ``"pooled"``
            (exact full-resolution statistics pooled over all tiles run as one batch); see ``docs/rddm.md``
            for the trade-offs. Without tiling or GroupNorm layers both are the same.
        stats_size: longest side in pixels of that downscaled copy (rounded down to the latent grid); default
            ``max(tile, DEFAULT_STATS_SIZE)``. Larger is more faithful and needs more memory (one untiled pass).

    Raises:
        ConfigError: a tile smaller than the latent grid, an overlap that does not fit, an unknown
            ``norm_stats`` or a ``stats_size`` smaller than the latent grid.
    """

    def __init__(self, model: torch.nn.Module, *, tile: int | None = DEFAULT_TILE, overlap: int | None = None,
                 margin: int | None = None, tile_batch: int = 1, dtype: torch.dtype | None = None,
                 norm_stats: str = DEFAULT_NORM_STATS, stats_size: int | None = None):
        self.model = model
        if norm_stats not in NORM_STATS:
            raise ConfigError(f"--norm-stats must be one of {', '.join(NORM_STATS)}, got {norm_stats!r}")
        self.norm_stats = norm_stats
        self.factor = int(model.latent_factor)
        m = latent_multiple(model)
        # latent tiles start at multiples of `align`: whole UNet blocks, and an even pixel offset (Bayer phase)
        self.align = m if (m * self.factor) % 2 == 0 else 2 * m
        self.pixel_multiple = self.factor * self.align
        self.tile_batch = int(tile_batch)
        self.dtype = dtype
        if not tile:
            self.tiling = None
        else:
            t = (int(tile) // self.factor) // self.align * self.align
            overlap = int(tile) // 4 if overlap is None else int(overlap)
            o = math.ceil(overlap / self.factor)
            if t < self.align:
                raise ConfigError(f"--tile {tile} is smaller than the model's latent grid of {self.pixel_multiple} "
                                  "pixels", fix=f"use a multiple of {self.pixel_multiple}, e.g. {DEFAULT_TILE}")
            mg = o // 4 if margin is None else int(margin)
            if not 2 * mg < o < t:
                raise ConfigError(f"--overlap {overlap} does not fit --tile {tile} (latent tile {t}, overlap {o}, "
                                  f"margin {mg})", fix="use an overlap of about a quarter of the tile")
            self.tiling = Tiling(t, o, mg, self.align)
        if stats_size is None:
            stats_size = max(int(tile or 0), DEFAULT_STATS_SIZE)
        if int(stats_size) < self.pixel_multiple:
            raise ConfigError(f"--norm-stats-size {stats_size} is smaller than the model's latent grid of "
                              f"{self.pixel_multiple} pixels", fix=f"use at least {DEFAULT_STATS_SIZE}")
        self.stats_size = int(stats_size)
        self._shared = (norm_stats in ("global", "pooled") and isinstance(model, torch.nn.Module)
                        and bool(groupnorm_layers(model)))

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dtype is None else x.to(self.dtype)

    def _stage(self, fn, x: torch.Tensor, small, *, in_scale: int = 1, out_scale: int = 1) -> torch.Tensor:
        """One stage tiled; with shared statistics, recorded first by ``fn(small(x))`` (one untiled pass)."""
        t, tb = self.tiling, self.tile_batch
        if (not self._shared or t is None
                or (x.shape[-2] <= t.tile * in_scale and x.shape[-1] <= t.tile * in_scale)):  # a single tile
            return tiled_apply(fn, x, t, in_scale=in_scale, out_scale=out_scale, tile_batch=tb)
        if self.norm_stats == "pooled":  # all tiles in one call, statistics pooled layer by layer
            boxes = owned_boxes((x.shape[-2] // in_scale, x.shape[-1] // in_scale), t)
            return tiled_apply(pooled_tile_fn(fn, self.model, boxes, x.shape[0]), x, t, in_scale=in_scale,
                               out_scale=out_scale, tile_batch=len(boxes))
        with record_groupnorm_stats(self.model) as stats:
            fn(small(x))
        return tiled_apply(with_groupnorm_stats(fn, self.model, stats), x, t, in_scale=in_scale,
                           out_scale=out_scale, tile_batch=tb)

    @torch.no_grad()
    def __call__(self, raw: torch.Tensor, pattern: Pattern | str, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Restore one mosaic.

        Args:
            raw: ``(1, 1, H, W)`` float normalised mosaic (``H``, ``W`` even), on the model's device.
            pattern: its Bayer pattern.
            prompt_embeds: ``(1, L, D)`` prompt embedding.

        Returns:
            ``(1, 3, H, W)`` float32 linear camera RGB (not clipped).
        """
        if raw.ndim != 4 or raw.shape[:2] != (1, 1):
            raise ShapeError(f"raw must be (1, 1, H, W), got {tuple(raw.shape)}")
        h, w = raw.shape[-2:]
        if h % 2 or w % 2:
            raise ShapeError(f"raw is {h}x{w}; Bayer mosaics have even sides")
        pattern = Pattern(pattern)
        x = reflect_pad(raw.float(), self.pixel_multiple)
        emb = self._cast(prompt_embeds)
        model, f = self.model, self.factor

        def encode(xt):
            return model.encode(self._cast(xt), [pattern] * xt.shape[0])

        def denoise(zt):
            return model.denoise(self._cast(zt), [pattern] * zt.shape[0], emb.expand(zt.shape[0], -1, -1))

        def decode(zt):
            return model.decode(self._cast(zt))

        side, zside = self.stats_size, self.stats_size // f
        z = self._stage(encode, x, lambda v: downscale_mosaic(v, pattern, side, self.pixel_multiple), in_scale=f)
        z0 = self._stage(denoise, z, lambda v: downscale_latent(v, zside, self.align))
        linear = self._stage(decode, z0, lambda v: downscale_latent(v, zside, self.align), out_scale=f)
        return linear[:, :, :h, :w]
