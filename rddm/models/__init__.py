"""RDDM's networks (diffusers ``ModelMixin``/``ConfigMixin``: ``save_pretrained``/``from_pretrained``).

* :class:`rddm.models.ddnet.DDNet` — joint denoising + demosaicing (RAW → linear RGB).
* :class:`rddm.models.rvae.RVAE` — the RAW-domain VAE (an ``AutoencoderKL``), with CMB LoRA groups.
* :class:`rddm.models.discriminator.PatchDiscriminator` — the RVAE's patch-GAN discriminator.
* :class:`rddm.models.rddm.RDDM` — the one-step RAW diffusion restorer (RVAE + SD UNet, CMB LoRA).

Submodules are imported on first use (they import diffusers).
"""

from __future__ import annotations

from rawsynth._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (type checkers read it as True)
if TYPE_CHECKING:  # what the lazy names are, for IDEs and type checkers
    from . import ddnet, rvae, discriminator, rddm

__getattr__, __dir__, __all__ = lazy_exports(__name__, submodules=("ddnet", "rvae", "discriminator", "rddm"))
