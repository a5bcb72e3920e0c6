"""RDDM's networks (diffusers ``ModelMixin``/``ConfigMixin``: ``save_pretrained``/``from_pretrained``).

* :class:`rddm.models.ddnet.DDNet` — joint denoising + demosaicing (RAW → linear RGB).
* :class:`rddm.models.rvae.RVAE` — the RAW-domain VAE (an ``AutoencoderKL``), with CMB LoRA groups.
* :class:`rddm.models.discriminator.PatchDiscriminator` — the RVAE's patch-GAN discriminator.
* :class:`rddm.models.rddm.RDDM` — the one-step RAW diffusion restorer (RVAE + SD UNet, CMB LoRA).

Submodules are imported on first use (they import diffusers).
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("ddnet", "rvae", "discriminator", "rddm")

__all__ = list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rddm.models' has no attribute {name!r}")
