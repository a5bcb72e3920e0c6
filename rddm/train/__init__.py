"""Training stages of RDDM (``ddnet``, ``rvae``, ``calibrate``, ``rddm``), all built on :mod:`rddm.train.core`;
submodules load on first use. See ``docs/architecture.md``."""

from __future__ import annotations

from rawsynth._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from . import calibrate, checkpoint, core, ddnet, distributed, logger, optim, rddm, rvae, streams

__getattr__, __dir__, __all__ = lazy_exports(__name__, submodules=(
    "core", "ddnet", "rvae", "calibrate", "rddm", "distributed", "streams", "optim", "checkpoint", "logger"))
