"""RDDM — RAW-domain one-step diffusion restorer: models, losses, training and inference. Importing it is
cheap: subpackages (torch, diffusers, peft) load on first use. See ``docs/architecture.md``."""

from __future__ import annotations

from rawsynth._lazy import lazy_exports
from rawsynth._version import __version__

from .errors import CheckpointError, ConfigError, DataError, RddmError, WeightsError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from . import cli, config, lora, losses, lpips, models, prompts, restore, schedule, train, vsd

__getattr__, __dir__, __all__ = lazy_exports(
    __name__, submodules=("models", "losses", "lpips", "lora", "prompts", "vsd", "restore", "train", "config", "cli",
                          "schedule"),
    eager=("__version__", "RddmError", "ConfigError", "WeightsError", "DataError", "CheckpointError"))
