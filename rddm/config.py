"""Training configs: one frozen dataclass per stage, read strictly from YAML (see ``docs/training.md``).

Importing this module is cheap (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rawsynth.errors import ConfigError

from .config_io import config_diff, config_from_dict, config_to_dict, load_config, load_yaml, replace_path, save_config
from .config_rddm import OSEDIFF_NEGATIVE_PROMPT, PromptConfig, RDDMLossConfig, RDDMModelConfig
from .config_sections import DataConfig, MixedPrecision, OnTheFlyConfig, OptimConfig, _check

from .train.val_config import EmaConfig, ValidationConfig

__all__ = ["OnTheFlyConfig", "DataConfig", "OptimConfig", "TrainConfig", "DDNetModelConfig", "DDNetTrainConfig",
           "RVAEModelConfig", "RVAELossConfig", "RVAETrainConfig", "CalibrateConfig", "RDDMModelConfig",
           "RDDMLossConfig", "PromptConfig", "RDDMTrainConfig", "OSEDIFF_NEGATIVE_PROMPT", "config_from_dict",
           "config_to_dict", "load_config", "save_config", "load_yaml", "replace_path", "config_diff"]


@dataclass(frozen=True)
class TrainConfig:
    """Run options shared by every training stage.

    Attributes:
        seed: run seed: model initialisation, data order and crops, posterior sampling (per step and rank).
        max_steps: optimizer steps to train for (each of ``batch_size × grad_accum_steps × world size`` samples).
        batch_size: samples per micro-batch **per process**; with ``global_batch_size``: the largest micro-batch
            a process may run (memory), the one used being the largest divisor of the per-process share.
        grad_accum_steps: micro-batches accumulated per optimizer step (derived when ``global_batch_size`` is set).
        global_batch_size: samples per optimizer step over all processes (``null``: ``batch_size ×
            grad_accum_steps × world size``). Set, it is split evenly over the processes
            (:func:`rddm.train.recipe.resolve_batch`); a world size that does not divide it is refused.
        max_nonfinite: stop the run after this many consecutive steps with a non-finite loss or gradient norm
            (each is skipped: no weight moves); the error names the step.
        mixed_precision: ``no``, ``bf16`` or ``fp16`` autocast (``fp16`` adds a gradient scaler).
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30 % slower).
        log_every: log (TensorBoard, ``metrics.jsonl``, progress bar) every N steps.
        save_every: write a checkpoint every N steps (and always at the last step).
        keep_checkpoints: keep only the newest N checkpoints (0: keep all).
        tensorboard: write TensorBoard event files under ``OUT/logs``.
        data: :class:`DataConfig`.
        optim: :class:`OptimConfig`.
        validation: :class:`~rddm.train.val_config.ValidationConfig`: held-out validation while training
            (``null``: none).
        ema: :class:`~rddm.train.val_config.EmaConfig`: an EMA of the trained weights, used for validation and
            the final model folder (``null``: none).
    """

    seed: int = 0
    max_steps: int = 10000
    batch_size: int = 16
    grad_accum_steps: int = 1
    global_batch_size: int | None = None
    mixed_precision: MixedPrecision = "no"
    gradient_checkpointing: bool = False
    max_nonfinite: int = 10
    log_every: int = 50
    save_every: int = 2000
    keep_checkpoints: int = 3
    tensorboard: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig | None = None  # issue 16: rddm.train.validation
    ema: EmaConfig | None = None  # issue 16: rddm.train.ema

    def __post_init__(self):
        _check(self.max_steps >= 0, "max_steps", "an int >= 0", self.max_steps)
        for name in ("batch_size", "grad_accum_steps", "log_every", "save_every"):
            _check(getattr(self, name) >= 1, name, "an int >= 1", getattr(self, name))
        _check(self.keep_checkpoints >= 0, "keep_checkpoints", "an int >= 0", self.keep_checkpoints)
        _check(self.global_batch_size is None or self.global_batch_size >= 1, "global_batch_size",
               "null or an int >= 1", self.global_batch_size)
        if self.global_batch_size is not None and self.grad_accum_steps != 1:
            raise ConfigError(f"grad_accum_steps {self.grad_accum_steps} with global_batch_size "
                              f"{self.global_batch_size}: accumulation is derived from global_batch_size",
                              fix="set grad_accum_steps: 1 (and batch_size to the most a process holds), or "
                                  "global_batch_size: null")
        _check(self.max_nonfinite >= 1, "max_nonfinite", "an int >= 1", self.max_nonfinite)


# ------------------------------------------------------------------------------------------------- DDNet


@dataclass(frozen=True)
class DDNetModelConfig:
    """Constructor arguments of :class:`rddm.models.ddnet.DDNet` (see there)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 2
    residual_bilinear: bool = True

    def __post_init__(self):
        _check(len(self.block_out_channels) >= 1 and all(c >= 1 for c in self.block_out_channels),
               "model.block_out_channels", "a non-empty list of ints >= 1", self.block_out_channels)
        _check(self.layers_per_block >= 1, "model.layers_per_block", "an int >= 1", self.layers_per_block)


@dataclass(frozen=True)
class DDNetTrainConfig(TrainConfig):
    """``rddm train-ddnet``: L2 between DDNet(RAW) and the linear HQ on ``ddnet``-mode shards (paper §3.1).

    Attributes:
        model: :class:`DDNetModelConfig` (ignored when ``init`` is set: the architecture comes from there).
        init: a DDNet folder (``save_pretrained``) to start from instead of a random initialisation.
    """

    data: DataConfig = field(default_factory=lambda: DataConfig(mode="ddnet", crop=128))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, lr_scheduler="cosine", warmup_steps=500))
    model: DDNetModelConfig = field(default_factory=DDNetModelConfig)
    init: str | None = None


# -------------------------------------------------------------------------------------------------- RVAE


@dataclass(frozen=True)
class RVAEModelConfig:
    """How the RVAE is built.

    Attributes:
        sd_model: a local diffusers folder: a Stable Diffusion 2.1 folder (its ``vae/`` subfolder is read) or an
            ``AutoencoderKL`` folder itself. ``--sd-model`` replaces it. Nothing is ever downloaded.
        vae_config: ``AutoencoderKL`` constructor arguments for a **randomly initialised** VAE instead (tests,
            training from scratch). Exactly one of ``sd_model``, ``vae_config`` and ``init`` must be set.
        init: an RVAE folder (``save_pretrained``) to continue from.
        input_mode: how the 1-channel mosaic meets the pretrained 3-channel ``conv_in`` (see
            :class:`rddm.models.rvae.RVAE`): ``cfa_masked`` (3 channels, ``conv_in`` unchanged) or
            ``cfa_masked_with_mask`` (6 channels: the masked values and the CFA masks, ``conv_in`` widened with
            zero-initialised weights for the masks).
    """

    sd_model: str | None = None
    vae_config: dict | None = None
    init: str | None = None
    input_mode: Literal["cfa_masked", "cfa_masked_with_mask"] = "cfa_masked"


@dataclass(frozen=True)
class RVAELossConfig:
    """Stage-1 RVAE loss (paper Eq. 5): ``L_rec + λ_G·L_GAN`` with ``L_rec = L1_lin + L1_sRGB + LPIPS (+ KL)``.

    Attributes:
        l1_linear: weight of the L1 loss in linear (RAW-domain) space.
        l1_srgb: weight of the L1 loss in sRGB, through the differentiable PTP with each sample's ISP parameters.
        lpips: weight of LPIPS (0 disables it; > 0 needs ``lpips_weights``).
        lpips_domain: compare ``srgb`` (after PTP) or ``linear`` images with LPIPS.
        lpips_net: LPIPS backbone, ``vgg`` (LDM's VAE loss) or ``alex``.
        lpips_weights: local folder with the LPIPS weight files (see :mod:`rddm.lpips`).
        kl: weight of the KL term of the posterior (LDM's VAE: 1e-6; 0 disables it).
        gan: multiplier of the adaptive GAN weight ``λ_G = ‖∇L_rec‖ / (‖∇L_GAN‖ + 1e-4)`` taken at the decoder's
            last layer (LDM's ``disc_weight``; 0 disables the GAN).
        gan_domain: what the discriminator sees: ``linear`` images (Eq. 5) or ``srgb``.
        disc_start: first step at which the discriminator and the GAN term are active.
        disc_loss: ``hinge`` or ``vanilla`` (softplus) discriminator loss.
        disc_layers: strided layers of the patch discriminator.
        disc_channels: channels of its first layer.
        sample_posterior: decode a sample of the posterior (``True``, LDM) or its mode.
    """

    l1_linear: float = 1.0
    l1_srgb: float = 1.0
    lpips: float = 1.0
    lpips_domain: Literal["srgb", "linear"] = "srgb"
    lpips_net: Literal["vgg", "alex"] = "vgg"
    lpips_weights: str | None = None
    kl: float = 1e-6
    gan: float = 0.5
    gan_domain: Literal["linear", "srgb"] = "linear"
    disc_start: int = 5001
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    disc_layers: int = 3
    disc_channels: int = 64
    sample_posterior: bool = True

    def __post_init__(self):
        for name in ("l1_linear", "l1_srgb", "lpips", "kl", "gan"):
            _check(getattr(self, name) >= 0, f"loss.{name}", "a number >= 0", getattr(self, name))
        _check(self.disc_start >= 0, "loss.disc_start", "an int >= 0", self.disc_start)
        _check(self.disc_layers >= 1, "loss.disc_layers", "an int >= 1", self.disc_layers)
        _check(self.disc_channels >= 1, "loss.disc_channels", "an int >= 1", self.disc_channels)


@dataclass(frozen=True)
class RVAETrainConfig(TrainConfig):
    """``rddm train-rvae``: stage 1 of the RVAE (paper Eq. 5, setting 6's first half) on linear HQ images.

    Attributes:
        model: :class:`RVAEModelConfig`.
        loss: :class:`RVAELossConfig`.
        disc_optim: AdamW for the patch discriminator.
    """

    data: DataConfig = field(default_factory=lambda: DataConfig(mode="any", crop=256))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, betas=(0.5, 0.9)))
    model: RVAEModelConfig = field(default_factory=RVAEModelConfig)
    loss: RVAELossConfig = field(default_factory=RVAELossConfig)
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, betas=(0.5, 0.9)))

    def __post_init__(self):
        super().__post_init__()
        set_ = [k for k in ("sd_model", "vae_config", "init") if getattr(self.model, k) is not None]
        if len(set_) > 1:
            raise ConfigError(f"model: set only one of sd_model, vae_config and init (got {set_})")


@dataclass(frozen=True)
class CalibrateConfig:
    """``rddm calibrate-latent-scale``: the latent scale factor of paper Eq. 4.

    ``σ² = mean((z − μ̂)²)`` over every element of the latents of ``num_samples`` training samples, ``μ̂`` their
    mean; the RVAE config gets ``scaling_factor = 1/σ`` (so that ``z·scaling_factor`` has unit variance).

    Attributes:
        num_samples: training samples to encode (split over the ranks).
        batch_size: samples per batch per process.
        seed: data order/crops and posterior sampling.
        input: encode the ``linear`` HQ images (the paper) or the ``raw`` mosaics.
        sample_posterior: use samples of the posterior (as the diffusion model will see) or its mode.
        mixed_precision: autocast for the encoder.
        data: :class:`DataConfig` (no flips and file order by default).
    """

    num_samples: int = 1000
    batch_size: int = 8
    seed: int = 0
    input: Literal["linear", "raw"] = "linear"
    sample_posterior: bool = True
    mixed_precision: MixedPrecision = "no"
    data: DataConfig = field(default_factory=lambda: DataConfig(crop=None, flips=False, shuffle=0, num_workers=2))

    def __post_init__(self):
        _check(self.num_samples >= 1, "num_samples", "an int >= 1", self.num_samples)
        _check(self.batch_size >= 1, "batch_size", "an int >= 1", self.batch_size)


# ------------------------------------------------------------------------------------------ RDDM (stage 2)


@dataclass(frozen=True)
class RDDMTrainConfig(TrainConfig):
    """``rddm train``: the one-step RAW diffusion restorer (paper Eq. 6, §4.1) on ``rddm``-mode pairs.

    Only the CMB LoRA groups of the RVAE encoder and of the UNet train (``optim``); the RVAE decoder, the UNet
    and the text encoder are frozen. With ``loss.vsd`` a LoRA "update" UNet trains with the diffusion loss
    (``reg_optim``), alternating with the generator: each optimizer step is a generator step then a regulariser
    step.

    Attributes:
        model: :class:`RDDMModelConfig`.
        loss: :class:`RDDMLossConfig`.
        prompt: :class:`PromptConfig`.
        reg_optim: AdamW of the VSD update UNet's LoRA.
    """

    max_steps: int = 150000
    batch_size: int = 16
    global_batch_size: int | None = 16
    mixed_precision: MixedPrecision = "bf16"
    save_every: int = 5000
    data: DataConfig = field(default_factory=lambda: DataConfig(mode="rddm", crop=512))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, weight_decay=1e-2, max_grad_norm=1.0))
    model: RDDMModelConfig = field(default_factory=RDDMModelConfig)
    loss: RDDMLossConfig = field(default_factory=RDDMLossConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    reg_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, weight_decay=1e-2,
                                                                        max_grad_norm=1.0))
