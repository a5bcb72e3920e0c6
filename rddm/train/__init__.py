"""Training stages of RDDM, all built on :mod:`rddm.train.core`.

* :mod:`rddm.train.ddnet` — ``rddm train-ddnet`` (DDNet, L2).
* :mod:`rddm.train.rvae` — ``rddm train-rvae`` (RVAE stage 1, paper Eq. 5).
* :mod:`rddm.train.calibrate` — ``rddm calibrate-latent-scale`` (paper Eq. 4).
* :mod:`rddm.train.rddm` — ``rddm train`` (the one-step restorer's LoRA groups, paper Eq. 6).

Submodules are imported on first use (they import torch and diffusers).
"""

from __future__ import annotations

from rawsynth._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from . import calibrate, checkpoint, core, ddnet, distributed, logger, optim, rddm, rvae, streams

__getattr__, __dir__, __all__ = lazy_exports(__name__, submodules=(
    "core", "ddnet", "rvae", "calibrate", "rddm", "distributed", "streams", "optim", "checkpoint", "logger"))
