"""RDDM — RAW-domain one-step diffusion restorer: models, losses and training (see docs/training.md).

* :mod:`rddm.models` — DDNet, the RVAE (with CMB LoRA) and the patch discriminator.
* :mod:`rddm.losses` — differentiable PTP, dual-domain losses, GAN terms; :mod:`rddm.lpips` — offline LPIPS.
* :mod:`rddm.lora` — CMB LoRA groups (one per Bayer pattern).
* :mod:`rddm.train` — training stages and their shared infrastructure; :mod:`rddm.config` — their configs.
* :mod:`rddm.cli` — the ``rddm`` command.

Importing ``rddm`` is cheap: subpackages (torch, diffusers, peft) load on first use.
"""

from __future__ import annotations

import importlib

from rawsynth._version import __version__

from .errors import CheckpointError, ConfigError, DataError, RddmError, WeightsError

_SUBMODULES = ("models", "losses", "lpips", "lora", "train", "config", "cli")

__all__ = ["__version__", "RddmError", "ConfigError", "WeightsError", "DataError", "CheckpointError", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rddm' has no attribute {name!r}")
