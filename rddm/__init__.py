"""RDDM — RAW-domain one-step diffusion restorer: models, losses, training and inference (see docs/training.md
and docs/rddm.md).

* :mod:`rddm.models` — DDNet, the RVAE (with CMB LoRA), the one-step restorer RDDM and the patch discriminator.
* :mod:`rddm.vsd` — the VSD regulariser (frozen and LoRA "update" UNet); :mod:`rddm.prompts` — RAW prompt
  extraction (RPE) and cached text embeddings.
* :mod:`rddm.restore` — ``rddm restore``: RAW/DNG/shard/PNG+JSON inputs, tiled inference, sRGB/linear outputs.
* :mod:`rddm.losses` — differentiable PTP, dual-domain losses, GAN terms; :mod:`rddm.lpips` — offline LPIPS.
* :mod:`rddm.lora` — CMB LoRA groups (one per Bayer pattern).
* :mod:`rddm.train` — training stages and their shared infrastructure; :mod:`rddm.config` — their configs.
* :mod:`rddm.cli` — the ``rddm`` command.

Importing ``rddm`` is cheap: subpackages (torch, diffusers, peft) load on first use.
"""

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
