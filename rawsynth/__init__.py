"""rawsynth — synthesise RAW-domain LQ–HQ training pairs from sRGB photo collections.

Data flow (RDDM paper, Fig. 5): sRGB → detail degradation → IPTP (:mod:`rawsynth.isp`) → MNS
(:mod:`rawsynth.mns`) → shards; :mod:`rawsynth.io` reads and writes images, 16-bit PNG and DNG.

Importing ``rawsynth`` is cheap: subpackages load on first use, and basicsr is only reached through
:mod:`rawsynth.compat.basicsr`.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import ConfigError, InputError, RawsynthError, ShapeError, UnsupportedCFAError

__all__ = ["__version__", "ConfigError", "InputError", "RawsynthError", "ShapeError", "UnsupportedCFAError",
           "isp", "mns", "io"]

_SUBPACKAGES = {"isp", "mns", "io", "compat", "demo", "cli"}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rawsynth' has no attribute {name!r}")
