"""Training stages of RDDM, all built on :mod:`rddm.train.core`.

* :mod:`rddm.train.ddnet` — ``rddm train-ddnet`` (DDNet, L2).
* :mod:`rddm.train.rvae` — ``rddm train-rvae`` (RVAE stage 1, paper Eq. 5).
* :mod:`rddm.train.calibrate` — ``rddm calibrate-latent-scale`` (paper Eq. 4).
* :mod:`rddm.train.rddm` — ``rddm train`` (the one-step restorer's LoRA groups, paper Eq. 6).

Submodules are imported on first use (they import torch and diffusers).
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("core", "ddnet", "rvae", "calibrate", "rddm")

__all__ = list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rddm.train' has no attribute {name!r}")
