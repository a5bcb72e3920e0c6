"""rawsynth — synthesise RAW-domain LQ–HQ training pairs from sRGB photo collections.

Data flow (RDDM paper, Fig. 5): sRGB → detail degradation (:mod:`rawsynth.degrade`) → IPTP
(:mod:`rawsynth.isp`) → MNS (:mod:`rawsynth.mns`) → pairs (:mod:`rawsynth.pipeline`) → shards
(:mod:`rawsynth.shards`, written by :mod:`rawsynth.generate`) → training (:mod:`rawsynth.data`);
:mod:`rawsynth.io` reads and writes images, 16-bit PNG and DNG.

Importing ``rawsynth`` is cheap: subpackages load on first use, and basicsr is only reached through
:mod:`rawsynth.compat.basicsr`.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import ConfigError, InputError, RawsynthError, ShapeError, UnsupportedCFAError

_SUBPACKAGES = ("isp", "mns", "io", "degrade", "pipeline", "sources", "shards", "generate", "data", "inspect", "rng",
                "compat", "demo", "cli", "backends", "kernels", "onthefly")

__all__ = ["__version__", "ConfigError", "InputError", "RawsynthError", "ShapeError", "UnsupportedCFAError",
           *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rawsynth' has no attribute {name!r}")
