"""Deprecated module name: :mod:`rddm.restore.restorer` (``Restorer``, tiling helpers); kept so old imports work."""

from .restorer import (DEFAULT_NORM_STATS, DEFAULT_OVERLAP, DEFAULT_STATS_SIZE, DEFAULT_TILE, Restorer, latent_multiple,
                       reflect_pad)

__all__ = ["Restorer", "latent_multiple", "reflect_pad", "DEFAULT_TILE", "DEFAULT_OVERLAP", "DEFAULT_NORM_STATS",
           "DEFAULT_STATS_SIZE"]
