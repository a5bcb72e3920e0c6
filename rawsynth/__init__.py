"""rawsynth: synthesise RAW-domain LQ–HQ training pairs from sRGB photos (the RDDM paper's Fig. 5 chain).
Importing it is cheap: subpackages load on first use. See ``docs/architecture.md``."""

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
