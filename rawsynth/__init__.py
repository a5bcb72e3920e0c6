"""rawsynth — synthesise RAW-domain LQ–HQ training pairs from sRGB photo collections.

Data flow (RDDM paper, Fig. 5): sRGB → detail degradation (:mod:`rawsynth.degrade`) → IPTP
(:mod:`rawsynth.isp`) → MNS (:mod:`rawsynth.mns`) → pairs (:mod:`rawsynth.pipeline`) → shards
(:mod:`rawsynth.shards`, written by :mod:`rawsynth.generate`) → training (:mod:`rawsynth.data`);
:mod:`rawsynth.io` reads and writes images, 16-bit PNG and DNG.

Importing ``rawsynth`` is cheap: subpackages load on first use, and basicsr is only reached through
:mod:`rawsynth.compat.basicsr`.
"""

from __future__ import annotations

from ._lazy import lazy_exports
from ._version import __version__
from .errors import ConfigError, InputError, RawsynthError, ShapeError, UnsupportedCFAError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from . import (backends, cli, compat, data, degrade, demo, device, generate, generate_config, inspect, io, isp,
                   kernels, mns, onthefly, pipeline, rng, shards, sources)

__getattr__, __dir__, __all__ = lazy_exports(
    __name__, submodules=("isp", "mns", "io", "degrade", "pipeline", "sources", "shards", "generate", "data",
                          "inspect", "rng", "compat", "demo", "cli", "backends", "kernels", "onthefly", "device",
                          "generate_config"),
    eager=("__version__", "ConfigError", "InputError", "RawsynthError", "ShapeError", "UnsupportedCFAError"))
