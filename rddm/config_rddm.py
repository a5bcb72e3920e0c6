"""The sections of stage 2's config (``rddm train``): model, loss, prompts (see ``docs/training.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rawsynth.errors import ConfigError

from .config_sections import _check

__all__ = ["RDDMModelConfig", "RDDMLossConfig", "PromptConfig", "OSEDIFF_NEGATIVE_PROMPT"]

#: OSEDiff's negative prompt for the classifier-free guidance of the VSD loss.
OSEDIFF_NEGATIVE_PROMPT = ("painting, oil painting, illustration, drawing, art, sketch, cartoon, CG Style, 3D render, "
                           "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, "
                           "signature, jpeg artifacts, deformed, lowres, over-smooth")


@dataclass(frozen=True)
class RDDMModelConfig:
    """How the one-step restorer (:class:`rddm.models.rddm.RDDM`) is built.

    Attributes:
        sd_model: local Stable Diffusion 2.1 diffusers folder (UNet, scheduler, text encoder, tokenizer).
            ``--sd-model`` replaces it. Nothing is ever downloaded.
        rvae: the RVAE folder of stage 1 (``OUT/rvae`` of ``rddm train-rvae``, latent scale calibrated);
            ``--rvae`` replaces it. ``null``: the SD folder's own VAE as an RVAE (tests, ablations).
        init: an RDDM folder (``save_pretrained``) whose LoRA groups to start from instead of new ones.
        lora_rank: rank of every LoRA group (the paper: 4).
        lora_alpha: LoRA alpha, scale ``alpha/rank`` (OSEDiff: peft's default 8, scale 2 at rank 4; ``null``: the
            rank, scale 1).
        lora_init: ``gaussian`` (OSEDiff: ``A ~ N(0, 1/rank)``) or ``kaiming`` (peft's default); ``B = 0`` either way.
        lora_mode: ``cmb`` (one group per Bayer pattern, the paper) or ``all_in_one`` (one shared group,
            Table 7's ablation).
        patterns: the Bayer patterns to give a CMB group.
        timestep: the UNet's fixed timestep of the one-step generator.
        sample_posterior: encode to a sample of the RVAE posterior (``true``, as OSEDiff) or its mode during
            training.
        accept_uncalibrated_scale: train on an ``rvae`` folder without ``latent_scale.json`` (SD's 0.18215 kept);
            ``false``: that is a start-up error (run ``rddm calibrate-latent-scale`` first).
    """

    sd_model: str | None = None
    rvae: str | None = None
    init: str | None = None
    lora_rank: int = 4
    lora_alpha: float | None = 8.0
    lora_init: Literal["gaussian", "kaiming"] = "gaussian"
    lora_mode: Literal["cmb", "all_in_one"] = "cmb"
    patterns: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")
    timestep: int = 999
    sample_posterior: bool = True
    accept_uncalibrated_scale: bool = False

    def __post_init__(self):
        _check(self.lora_rank >= 1, "model.lora_rank", "an int >= 1", self.lora_rank)
        _check(self.lora_alpha is None or self.lora_alpha > 0, "model.lora_alpha", "null or a number > 0",
               self.lora_alpha)
        _check(len(self.patterns) >= 1 and len(set(self.patterns)) == len(self.patterns)
               and set(self.patterns) <= {"RGGB", "BGGR", "GRBG", "GBRG"}, "model.patterns",
               "a non-empty list of distinct Bayer patterns (RGGB, BGGR, GRBG, GBRG)", self.patterns)
        _check(0 <= self.timestep <= 999, "model.timestep", "an int in [0, 999]", self.timestep)


@dataclass(frozen=True)
class RDDMLossConfig:
    """Stage-2 loss (paper Eq. 6): ``λ_vsd·L_VSD + λ1·MSE_lin + λ2·(rgb_mse·MSE_sRGB + rgb_lpips·LPIPS_sRGB)``.

    The sRGB terms compare prediction and target through the differentiable PTP with each sample's own ISP
    parameters. ``raw_domain``/``srgb_domain`` switch a domain off (Table 5: RAW only, sRGB only, both); ``vsd``
    switches the VSD regulariser off (no update UNet is built then).

    Attributes:
        lambda_vsd: weight of the VSD (distribution matching) loss.
        lambda_raw: λ1, weight of ``L_RAW = MSE`` in linear (RAW-domain) space.
        lambda_rgb: λ2, weight of ``L_rgb = rgb_mse·MSE + rgb_lpips·LPIPS`` in sRGB.
        rgb_mse: weight of MSE inside ``L_rgb`` (OSEDiff's ``λ_l2 = 1``).
        rgb_lpips: weight of LPIPS inside ``L_rgb`` (OSEDiff's ``λ_lpips = 2``; 0 disables LPIPS).
        raw_domain: use the RAW-domain term.
        srgb_domain: use the sRGB-domain terms.
        vsd: use the VSD loss (and train its LoRA "update" UNet).
        vsd_start: first step whose generator loss includes L_VSD (the update UNet trains from step 0).
        lambda_diffusion: weight of the update UNet's ε-MSE diffusion loss (its own optimizer, ``reg_optim``).
        cfg_scale: classifier-free guidance scale of the frozen UNet in the VSD loss (OSEDiff: 7.5).
        t_min: smallest timestep drawn for VSD (``t ~ U[t_min, t_max)``).
        t_max: one past the largest timestep drawn.
        vsd_lora_rank: LoRA rank of the update UNet.
        vsd_lora_alpha: its LoRA alpha (OSEDiff: peft's default 8; ``null``: the rank).
        vsd_lora_init: its LoRA initialisation, ``gaussian`` (OSEDiff) or ``kaiming``.
        mse_range: the image range both MSE terms are computed on: ``signed`` (``[-1, 1]``, OSEDiff's and SD's
            convention: 4× the ``[0, 1]`` MSE, which keeps OSEDiff's balance of ``λ_l2 = 1``, ``λ_lpips = 2``,
            ``λ_vsd = 1``) or ``unit`` (``[0, 1]``). LPIPS always sees ``[-1, 1]``.
        lpips_net: LPIPS backbone, ``vgg`` (OSEDiff) or ``alex``.
        lpips_weights: local folder with the LPIPS weight files (``--lpips-weights``).
    """

    lambda_vsd: float = 1.0
    lambda_raw: float = 1.0
    lambda_rgb: float = 1.0
    rgb_mse: float = 1.0
    rgb_lpips: float = 2.0
    raw_domain: bool = True
    srgb_domain: bool = True
    vsd: bool = True
    vsd_start: int = 0
    lambda_diffusion: float = 1.0
    cfg_scale: float = 7.5
    t_min: int = 20
    t_max: int = 980
    vsd_lora_rank: int = 4
    vsd_lora_alpha: float | None = 8.0
    vsd_lora_init: Literal["gaussian", "kaiming"] = "gaussian"
    mse_range: Literal["signed", "unit"] = "signed"
    lpips_net: Literal["vgg", "alex"] = "vgg"
    lpips_weights: str | None = None

    def __post_init__(self):
        for name in ("lambda_vsd", "lambda_raw", "lambda_rgb", "rgb_mse", "rgb_lpips", "lambda_diffusion"):
            _check(getattr(self, name) >= 0, f"loss.{name}", "a number >= 0", getattr(self, name))
        _check(self.vsd_start >= 0, "loss.vsd_start", "an int >= 0", self.vsd_start)
        _check(self.cfg_scale >= 0, "loss.cfg_scale", "a number >= 0", self.cfg_scale)
        _check(0 <= self.t_min < self.t_max <= 1000, "loss.t_min/t_max", "0 <= t_min < t_max <= 1000",
               (self.t_min, self.t_max))
        _check(self.vsd_lora_rank >= 1, "loss.vsd_lora_rank", "an int >= 1", self.vsd_lora_rank)
        _check(self.vsd_lora_alpha is None or self.vsd_lora_alpha > 0, "loss.vsd_lora_alpha", "null or a number > 0",
               self.vsd_lora_alpha)
        if not self.terms():
            raise ConfigError("loss: every term is off (raw_domain, srgb_domain and vsd are false or their weights 0)",
                              fix="enable at least one of loss.raw_domain, loss.srgb_domain, loss.vsd")

    @property
    def mse_scale(self) -> float:
        """Factor of an MSE computed on ``[0, 1]`` images that gives it on :attr:`mse_range` (4 for ``[-1, 1]``)."""
        return 4.0 if self.mse_range == "signed" else 1.0

    def terms(self) -> list[str]:
        """The generator's active loss terms: a subset of ``mse_linear``, ``mse_srgb``, ``lpips``, ``vsd``."""
        out = []
        if self.raw_domain and self.lambda_raw > 0:
            out.append("mse_linear")
        if self.srgb_domain and self.lambda_rgb > 0:
            out += [n for n, w in (("mse_srgb", self.rgb_mse), ("lpips", self.rgb_lpips)) if w > 0]
        if self.vsd and self.lambda_vsd > 0:
            out.append("vsd")
        return out


@dataclass(frozen=True)
class PromptConfig:
    """Prompts of the UNet (RAW prompt extraction, paper §3.2, Table 6).

    Attributes:
        extractor: ``none`` (empty prompt), ``fixed:"a photo"``, ``tagger:PATH`` or ``python:mod:Class[:PATH]``
            (see :func:`rddm.prompts.build_extractor`).
        ddnet: a DDNet folder for the extractor's RAW → linear step (``null``: bilinear demosaic). Only used by
            extractors that look at the image.
        negative: the negative prompt of the VSD loss's classifier-free guidance (OSEDiff's by default).
    """

    extractor: str = "none"
    ddnet: str | None = None
    negative: str = OSEDIFF_NEGATIVE_PROMPT
