"""The RDDM's config (:class:`RDDMConfig`, saved as ``rddm_config.json``), its forward output and the SD UNet loader;
the network is :mod:`rddm.models.rddm`. See ``docs/rddm.md``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput

from rawsynth._config import from_mapping, to_dict, with_path
from rawsynth.mns import Pattern

from .. import lora as _lora
from ..errors import ConfigError, WeightsError
from ..schedule import SD_FOLDER_FIX as _SD_FIX
from ._io import resolve_model_dir

__all__ = ["RDDMConfig", "RDDMOutput", "CONFIG_NAME", "load_sd_unet"]

CONFIG_NAME = "rddm_config.json"
RVAE_LORA_DIR = "rvae_lora"
UNET_LORA_DIR = "unet_lora"
FORMAT_VERSION = 1
LORA_MODES = ("cmb", "all_in_one")
#: LoRA initialisations (peft ``init_lora_weights``: ``kaiming`` is peft's default ``True``).
LORA_INITS = ("kaiming", "gaussian")
#: One Bayer pattern for the whole batch, or one per sample.
Patterns = Pattern | str | Sequence[Pattern | str]


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RDDMConfig:
    """How an :class:`RDDM` is built (saved as ``rddm_config.json``; every field JSON-serialisable).

    Attributes:
        lora_rank: rank of every LoRA group (the paper: 4).
        lora_alpha: LoRA alpha (``None``: the rank, i.e. scale 1; OSEDiff: peft's default 8, scale ``8/rank``).
        lora_init: initialisation of new LoRA groups: ``kaiming`` (peft's default, ``A`` Kaiming-uniform) or
            ``gaussian`` (OSEDiff: ``A ~ N(0, 1/rank)``); ``B = 0`` either way (a new group changes nothing).
        lora_mode: ``cmb`` (one group per pattern, the paper) or ``all_in_one`` (one shared group, Table 7).
        patterns: the Bayer patterns the model accepts (``cmb``: each gets its own group).
        timestep: the UNet's fixed timestep (999: the generator starts from "pure noise" level).
        unet_targets: peft ``target_modules`` regex of the UNet (OSEDiff's list, :data:`rddm.lora.UNET_TARGETS`).
        encoder_targets: peft ``target_modules`` regex of the RVAE (encoder + ``quant_conv``).
        sample_posterior: in training mode, encode to a sample of the RVAE posterior (OSEDiff) instead of its
            mode; evaluation mode always uses the mode (deterministic).
        sd_model: the local SD-2.1 folder the base UNet and noise schedule come from (absolute path).
        rvae_model: the RVAE folder (``rddm train-rvae`` output); ``None``: the SD folder's VAE as an RVAE.
    """

    lora_rank: int = 4
    lora_alpha: float | None = None
    lora_init: str = "kaiming"
    lora_mode: str = "cmb"
    patterns: tuple[str, ...] = tuple(p.value for p in Pattern)
    timestep: int = 999
    unet_targets: str = _lora.UNET_TARGETS
    encoder_targets: str = _lora.ENCODER_TARGETS_QUANT
    sample_posterior: bool = True
    sd_model: str | None = None
    rvae_model: str | None = None

    def __post_init__(self):
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 1:
            raise ConfigError(f"lora_rank must be an int >= 1, got {self.lora_rank!r}")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ConfigError(f"lora_alpha must be None or > 0, got {self.lora_alpha!r}")
        if self.lora_init not in LORA_INITS:
            raise ConfigError(f"lora_init must be one of {LORA_INITS}, got {self.lora_init!r}")
        if self.lora_mode not in LORA_MODES:
            raise ConfigError(f"lora_mode must be one of {LORA_MODES}, got {self.lora_mode!r}")
        pats = tuple(self.patterns) if not isinstance(self.patterns, str) else (self.patterns,)
        try:
            pats = tuple(Pattern(p).value for p in pats)
        except ValueError:
            raise ConfigError(f"patterns must be Bayer patterns {[p.value for p in Pattern]}, got {pats}") from None
        if not pats or len(set(pats)) != len(pats):
            raise ConfigError(f"patterns must be a non-empty list of distinct patterns, got {pats}")
        object.__setattr__(self, "patterns", pats)
        if isinstance(self.timestep, bool) or not isinstance(self.timestep, int) or self.timestep < 0:
            raise ConfigError(f"timestep must be an int >= 0, got {self.timestep!r}")
        for k in ("sd_model", "rvae_model"):
            v = getattr(self, k)
            if v is not None:
                object.__setattr__(self, k, os.fspath(v))

    def to_dict(self) -> dict:
        """JSON-ready dict (``patterns`` as a list); ``RDDMConfig.from_dict(c.to_dict()) == c``."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict, path: str | os.PathLike | None = None) -> RDDMConfig:
        """Strict (:func:`rawsynth._config.from_mapping`): unknown keys and invalid values raise
        :class:`~rddm.errors.ConfigError` naming ``path``."""
        try:
            return from_mapping(cls, d, what="RDDM config")
        except ConfigError as e:
            raise with_path(e, path, fix=e.fix) from None

    @property
    def groups(self) -> tuple[str, ...]:
        """The CMB group keys: the patterns (``cmb``) or ``("ALL",)`` (``all_in_one``)."""
        return self.patterns if self.lora_mode == "cmb" else (_lora.ALL,)


@dataclass
class RDDMOutput(BaseOutput):
    """What :meth:`RDDM.forward` returns (a diffusers ``BaseOutput``: attribute, key and index access, and a
    registered pytree node, so DDP finds its tensors).

    Attributes:
        linear: restored linear RGB ``(B, 3, H, W)``, ≈[0, 1], not clipped.
        latent: the one-step estimate ẑ0, *scaled* latent ``(B, 4, H/f, W/f)`` (what VSD regularises).
    """

    linear: torch.Tensor
    latent: torch.Tensor


# ----------------------------------------------------------------------------------------------- UNet


def load_sd_unet(sd_model: str | os.PathLike, torch_dtype: torch.dtype | None = None):
    """The ``UNet2DConditionModel`` of a local SD folder (``unet/``) or a UNet folder. Never downloads.

    Raises:
        WeightsError: no such folder, no UNet in it, or unreadable weights.
    """
    from diffusers import UNet2DConditionModel

    root, sub = resolve_model_dir(sd_model, None, "unet", ("UNet2DConditionModel",), "diffusers UNet2DConditionModel",
                                  _SD_FIX)
    try:
        unet = UNet2DConditionModel.from_pretrained(str(root), subfolder=sub, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"cannot load the UNet ({type(e).__name__}: {str(e).splitlines()[0]})",
                           path=root / sub if sub else root, fix=_SD_FIX) from None
    return unet if torch_dtype is None else unet.to(dtype=torch_dtype)
