"""Training configs: frozen dataclasses read strictly from YAML and written back next to the checkpoints.

Every stage has one config class (:class:`DDNetTrainConfig`, :class:`RVAETrainConfig`, :class:`CalibrateConfig`,
:class:`RDDMTrainConfig`). A YAML file gives any subset of the fields; nested sections (``data``, ``optim``,
``model``, ``loss``, ...) may also be partial and keep the stage's defaults for the keys they omit. Unknown keys,
wrong types and out-of-range values raise :class:`~rddm.errors.ConfigError` naming the file and the key. The
resolved config (every field, defaults filled in) is saved as ``config.yaml`` in the output folder and in
every checkpoint, so a run can always be repeated.

Importing this module is cheap (no torch).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rawsynth._config import from_mapping, load_yaml, to_dict, with_path
from rawsynth.errors import ConfigError
from rawsynth.io.atomic import atomic_output

from .train.val_config import EmaConfig, ValidationConfig

__all__ = ["OnTheFlyConfig", "DataConfig", "OptimConfig", "TrainConfig", "DDNetModelConfig", "DDNetTrainConfig",
           "RVAEModelConfig", "RVAELossConfig", "RVAETrainConfig", "CalibrateConfig", "RDDMModelConfig",
           "RDDMLossConfig", "PromptConfig", "RDDMTrainConfig", "OSEDIFF_NEGATIVE_PROMPT", "config_from_dict",
           "config_to_dict", "load_config", "save_config", "load_yaml", "replace_path", "config_diff"]

MixedPrecision = Literal["no", "bf16", "fp16"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine"]


# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class OnTheFlyConfig:
    """Synthesise the training pairs while training (:mod:`rawsynth.onthefly`) instead of reading shards.

    The loader workers decode the sources and cut the 8-bit sRGB crops ``rawsynth generate`` would cut; the
    training device (or ``device``) degrades them and runs IPTP + MNS. Each epoch holds the samples that
    ``rawsynth generate SOURCES --seed SEED`` would write with the same synthesis config, with the same recipes
    and ``meta.json`` (see ``docs/training.md``).

    Attributes:
        sources: source photos as ``rawsynth generate`` takes them: folders (searched recursively), image files
            or list files (``.txt``/``.lst``/``.list``); empty: the photos bundled with scikit-image (a demo).
        synth_config: a ``rawsynth config`` YAML (synthesis keys of :class:`rawsynth.pipeline.SynthConfig`;
            its run keys ``seed``/``shard_size``/``num_samples``/``workers`` are ignored), or ``null`` for the
            defaults. The mode is the stage's (``data.mode``; ``rddm`` when that is ``any``) unless the file sets
            it, and the crop is ``data.crop`` unless the file sets it.
        samples: samples per epoch: the first ``samples`` planned samples (as ``rawsynth generate
            --num-samples``); ``null``: every source × ``crops_per_image``.
        seed: the synthesis seed (as ``rawsynth generate --seed``); ``null``: the run's ``seed``.
        device: where to synthesise (``cuda``, ``cuda:1``, ``cpu``); ``null``: the training device.
        jpeg: the JPEG codec of the degradation on CUDA: ``auto`` (nvJPEG on the GPU) or ``libjpeg`` (the
            shards' codec, on the host).
    """

    sources: tuple[str, ...] = ()
    synth_config: str | None = None
    samples: int | None = None
    seed: int | None = None
    device: str | None = None
    jpeg: Literal["auto", "libjpeg"] = "auto"

    def __post_init__(self):
        _check(self.samples is None or self.samples >= 1, "data.onthefly.samples", "null or an int >= 1",
               self.samples)
        _check(self.seed is None or self.seed >= 0, "data.onthefly.seed", "null or an int >= 0", self.seed)
        _check(self.device is None or self.device == "cpu" or self.device == "cuda"
               or (self.device.startswith("cuda:") and self.device[5:].isdigit()), "data.onthefly.device",
               "null, cpu, cuda or cuda:N", self.device)


@dataclass(frozen=True)
class DataConfig:
    """Where the training pairs come from and how they are read (:func:`rawsynth.data.make_loader`).

    Attributes:
        shards: shard files, folders of ``shard-*.tar`` (as written by ``rawsynth generate``) or brace patterns
            (``/data/pairs/shard-{000000..000099}.tar``). ``--shards`` on the command line replaces it.
        mode: the pair type the stage expects in ``meta.json`` (``ddnet``, ``rddm``) or ``any``.
        crop: random square crop (any offset; the Bayer pattern follows), even; ``null`` keeps whole samples
            (they must all have one size, as ``rawsynth generate`` writes them).
        flips: random horizontal/vertical flips (the Bayer pattern follows).
        shuffle: shard order permuted every epoch and a sample shuffle buffer of this many samples (0: file order).
        num_workers: DataLoader worker processes per rank; each reads its own shards (world size × workers shards
            at least).
        handler: what to do with a corrupt sample: ``raise``, ``warn`` (skip it with a warning) or ``skip``.
        verify: check every sample against the member checksums its shard's stats record (``rawsynth.data``,
            ``verify=``); a mismatch is a corrupt sample for ``handler``. Costs hashing each sample once.
        onthefly: :class:`OnTheFlyConfig`: synthesise the pairs while training instead of reading ``shards``.
            Set exactly one of ``shards`` and ``onthefly``. With it, ``shuffle > 0`` draws a new order of the
            samples every epoch (0: plan order), ``num_workers`` loader processes decode the sources, and
            ``handler`` applies to unreadable or too small sources.
    """

    shards: tuple[str, ...] = ()
    mode: Literal["ddnet", "rddm", "any"] = "any"
    crop: int | None = 256
    flips: bool = True
    shuffle: int = 1000
    num_workers: int = 4
    handler: Literal["raise", "warn", "skip"] = "warn"
    verify: bool = True
    onthefly: OnTheFlyConfig | None = None

    def __post_init__(self):
        if self.shards and self.onthefly is not None:
            raise ConfigError("data.shards and data.onthefly are both set; training reads either shards or "
                              "on-the-fly pairs", fix="remove one of them (--shards replaces data.shards)")
        _check(self.crop is None or (self.crop >= 2 and self.crop % 2 == 0), "data.crop", "null or an even int >= 2",
               self.crop)
        _check(self.shuffle >= 0, "data.shuffle", "an int >= 0", self.shuffle)
        _check(self.num_workers >= 0, "data.num_workers", "an int >= 0", self.num_workers)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule (``diffusers.optimization.get_scheduler``).

    Attributes:
        lr: peak learning rate.
        betas: AdamW ``(β1, β2)``.
        weight_decay: AdamW decoupled weight decay.
        eps: AdamW ε.
        max_grad_norm: clip the global gradient norm to this value (``null``: no clipping).
        lr_scheduler: ``constant``, ``constant_with_warmup``, ``linear`` (decay to 0) or ``cosine``.
        warmup_steps: linear warm-up steps (``constant_with_warmup``, ``linear``, ``cosine``).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    max_grad_norm: float | None = None
    lr_scheduler: Scheduler = "constant"
    warmup_steps: int = 0

    def __post_init__(self):
        _check(self.lr > 0, "optim.lr", "a number > 0", self.lr)
        _check(all(0 <= b < 1 for b in self.betas), "optim.betas", "two numbers in [0, 1)", self.betas)
        _check(self.weight_decay >= 0, "optim.weight_decay", "a number >= 0", self.weight_decay)
        _check(self.eps > 0, "optim.eps", "a number > 0", self.eps)
        _check(self.max_grad_norm is None or self.max_grad_norm > 0, "optim.max_grad_norm", "null or a number > 0",
               self.max_grad_norm)
        _check(self.warmup_steps >= 0, "optim.warmup_steps", "an int >= 0", self.warmup_steps)


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


# ---------------------------------------------------------------------------------------------- parsing


def _check(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


def config_from_dict(cls: type, d: dict | None, source: str | os.PathLike | None = None):
    """Build a config of class ``cls`` from a mapping, strictly.

    Args:
        cls: a config class of this module (e.g. :class:`DDNetTrainConfig`).
        d: the mapping (e.g. parsed YAML); missing keys keep the defaults, nested sections may be partial.
        source: the file ``d`` came from, named in error messages.

    Raises:
        ConfigError: an unknown key (named, with the valid ones), a wrong type or an invalid value.
    """
    try:
        return from_mapping(cls, d, None, convert=True)
    except ConfigError as e:
        if source is not None:
            raise with_path(e, source) from None
        raise


def config_to_dict(cfg) -> dict:
    """The config as plain YAML/JSON-ready data (tuples become lists)."""
    return to_dict(cfg)


def load_config(cls: type, path: str | os.PathLike | None = None, overrides: dict | None = None):
    """Read a config of class ``cls`` from a YAML file (``None``: the defaults), then apply ``overrides``.

    ``overrides`` maps dotted keys to values (``{"data.shards": [...], "max_steps": 10}``); a ``None`` value
    leaves the key alone.
    """
    d = load_yaml(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = d
        *parents, last = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {} if node.get(p) is None else node[p]
            node = node[p]
        node[last] = value
    return config_from_dict(cls, d, source=path)


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (every field), atomically."""
    import yaml

    text = f"# {type(cfg).__name__} (resolved: every field, defaults filled in)\n"
    text += yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None, width=110)
    with atomic_output(Path(path)) as tmp:
        Path(tmp).write_text(text)


def replace_path(cfg, dotted: str, value):
    """A copy of ``cfg`` with the (dotted) field replaced, e.g. ``replace_path(cfg, "data.shards", (...))``."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})


def config_diff(a, b, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two configs of the same class."""
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va) and dataclasses.is_dataclass(vb):
            out += config_diff(va, vb, f"{prefix}{f.name}.")
        elif va != vb:
            out.append(f"{prefix}{f.name}")
    return out
