"""RDDM — the one-step RAW diffusion restorer (paper §3.2, Fig. 4b): RVAE encoder + SD UNet at a fixed
timestep, both with CMB LoRA, and the frozen RVAE decoder (see ``docs/rddm.md``); its folder I/O is
:mod:`rddm.models.rddm_folder`."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rawsynth._checks import check_bchw
from rawsynth.errors import ShapeError
from rawsynth.mns import Pattern, as_patterns

from .. import lora as _lora
from ..errors import ConfigError, WeightsError
from ..schedule import PREDICTION_TYPES, add_noise, load_alphas_cumprod, predict_x0, prediction_target
from ..schedule import SD_FOLDER_FIX as _SD_FIX
from .rddm_config import CONFIG_NAME, Patterns, RDDMConfig, RDDMOutput, load_sd_unet
from .rddm_folder import RDDMFolderMixin, _abs
from .rvae import RVAE

__all__ = ["RDDM", "RDDMConfig", "RDDMOutput", "CONFIG_NAME", "load_sd_unet", "load_alphas_cumprod",
           "predict_x0", "add_noise", "prediction_target"]

# ---------------------------------------------------------------------------------------------- model


class RDDM(RDDMFolderMixin, nn.Module):
    """The one-step RAW restorer: RVAE encoder (CMB LoRA) → SD UNet (CMB LoRA) at ``t`` → frozen RVAE decoder.

    Build it with :meth:`from_sd` (training) or :meth:`from_pretrained` (a saved folder). ``docs/rddm.md`` has
    the data flow, the folder layout and dtypes.

    Attributes:
        rvae: the :class:`~rddm.models.rvae.RVAE`; its encoder (and ``quant_conv``) carries the CMB groups.
        unet: the SD ``UNet2DConditionModel``, carrying the CMB groups (and possibly a VSD adapter, see
            :class:`rddm.vsd.VSDRegularizer`, which never takes part in :meth:`forward`).
        config: the :class:`RDDMConfig`.
        prediction_type: the UNet's parametrisation from the SD scheduler (``epsilon`` for SD-2.1-base).
        alphas_cumprod: buffer ``(T,)`` float32, the SD noise schedule's ᾱ.
    """

    def __init__(self, rvae: RVAE, unet: nn.Module, alphas_cumprod: torch.Tensor, config: RDDMConfig,
                 prediction_type: str = "epsilon", add_lora: bool = True):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if config.timestep >= alphas_cumprod.numel():
            raise ConfigError(f"timestep {config.timestep} is outside the schedule's {alphas_cumprod.numel()} steps")
        for m, what in ((rvae, "RVAE"), (unet, "UNet")):
            if _lora.cmb_groups(m):
                raise WeightsError(f"the {what} already has CMB LoRA groups {_lora.cmb_groups(m)}; RDDM adds its own",
                                   fix="pass an RVAE folder without cmb_lora/ (the output of `rddm train-rvae`)")
        latent_ch = rvae.config.latent_channels
        if unet.config.in_channels != latent_ch or unet.config.out_channels != latent_ch:
            raise WeightsError(f"the UNet takes {unet.config.in_channels} channels, the RVAE latent has {latent_ch}",
                               fix="use the RVAE trained from this SD model's VAE")
        self.config = config
        self.prediction_type = prediction_type
        self.rvae = rvae
        self.unet = unet
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().to(torch.float32).clone(), persistent=False)
        rvae.requires_grad_(False)
        unet.requires_grad_(False)
        if add_lora:
            kw = dict(rank=config.lora_rank, alpha=config.lora_alpha, init_lora_weights=config.lora_init)
            _lora.add_cmb_lora(rvae, config.groups, target_modules=config.encoder_targets, **kw)
            _lora.add_cmb_lora(unet, config.groups, target_modules=config.unet_targets, **kw)
        self._merged: str | None = None

    def _apply(self, fn, recurse=True):
        # ``.to(dtype)``/``.half()`` cast floating buffers; the noise schedule stays float32 (ᾱ_999 ≈ 0.0047 loses
        # ~0.4 % in bf16, amplified by 1/√ᾱ), only following the device
        ac = self.alphas_cumprod
        super()._apply(fn, recurse)
        self.alphas_cumprod = ac.to(device=self.alphas_cumprod.device, dtype=torch.float32)
        return self

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_sd(cls, sd_model: str | os.PathLike, rvae_model: str | os.PathLike | None = None,
                torch_dtype: torch.dtype | None = None, **config_overrides: Any) -> RDDM:
        """A new RDDM from a local SD-2.1 folder and an RVAE folder, with fresh CMB groups (LoRA B = 0, so it starts
        as the plain one-step SD pipeline on the RVAE).

        Args:
            sd_model: the SD-2.1 diffusers folder (``unet/``, ``scheduler/``; ``vae/`` when ``rvae_model`` is None).
            rvae_model: the ``rddm train-rvae`` output (``OUT`` or ``OUT/rvae``); ``None``: ``RVAE.from_sd``.
            torch_dtype: cast the whole model (default: float32).
            **config_overrides: :class:`RDDMConfig` fields (``lora_rank``, ``lora_mode``, ``patterns``, ...).

        Raises:
            WeightsError: a missing/invalid folder (named, with the fix).
            ConfigError: a bad config value.
        """
        bad = {"sd_model", "rvae_model"} & set(config_overrides)
        if bad:
            raise ConfigError(f"pass {sorted(bad)} as arguments, not config overrides")
        config = RDDMConfig.from_dict({**config_overrides, "sd_model": _abs(sd_model), "rvae_model": _abs(rvae_model)})
        model = cls._build(config)
        return model if torch_dtype is None else model.to(dtype=torch_dtype)

    @classmethod
    def _build(cls, config: RDDMConfig, add_lora: bool = True) -> RDDM:
        if config.sd_model is None:
            raise WeightsError("no SD model folder given", fix=_SD_FIX)
        unet = load_sd_unet(config.sd_model)
        ac, pred = load_alphas_cumprod(config.sd_model)
        rvae = RVAE.from_sd(config.sd_model) if config.rvae_model is None else RVAE.from_pretrained(config.rvae_model)
        return cls(rvae, unet, ac, config, prediction_type=pred, add_lora=add_lora)

    # ------------------------------------------------------------------------------------------ properties

    @property
    def latent_factor(self) -> int:
        """Pixel size / latent size (8 for the SD VAE)."""
        return 2 ** (len(self.rvae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Input heights/widths must be multiples of this (latent factor × the UNet's downsampling, and even)."""
        m = self.latent_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        return m if m % 2 == 0 else 2 * m

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def alpha_bar(self) -> torch.Tensor:
        """ᾱ at the generator's timestep (0-d float32 tensor)."""
        return self.alphas_cumprod[self.config.timestep]

    # ------------------------------------------------------------------------------------------ routing

    def _patterns(self, patterns, batch: int) -> list[Pattern]:
        pats = as_patterns(patterns, batch, "patterns")
        bad = sorted({p.value for p in pats} - set(self.config.patterns))
        if bad:
            raise ConfigError(f"this RDDM has no LoRA group for Bayer pattern(s) {bad} (it was trained for "
                              f"{list(self.config.patterns)})", fix="restore RAWs of a trained pattern, or train "
                              "with those patterns in model.patterns")
        return pats

    @contextmanager
    def _select(self, model: nn.Module, name: str):
        """Activate a group, or, in merged (inference) mode, make sure that group is the merged one."""
        if self._merged is None:
            with _lora.active_adapter(model, name):
                yield
            return
        if _lora.merged_adapters(model) != [name]:  # (also when something unmerged it, e.g. adapters_disabled)
            self._merge(name)
        yield

    # ------------------------------------------------------------------------------------------ forward

    def encode(self, raw: torch.Tensor, patterns: Patterns, generator: torch.Generator | None = None,
               sample: bool = False) -> torch.Tensor:
        """Encode RAW mosaics with each sample's encoder group.

        Args:
            raw: ``(B, 1, H, W)`` normalised mosaic in ``[0, 1]``; ``H``, ``W`` multiples of :attr:`size_multiple`.
            patterns: one Bayer pattern or one per sample.
            generator: for ``sample=True``.
            sample: a sample of the posterior instead of its mode.

        Returns:
            The *scaled* latent ``z = E(raw)·scaling_factor``, ``(B, C, H/f, W/f)`` in the model's dtype.

        Raises:
            ShapeError: bad shape or size.
            ConfigError: a pattern without a group.
        """
        check_bchw(raw, "raw", channels=1)
        b, _, h, w = raw.shape
        m = self.size_multiple
        if h % m or w % m:
            raise ShapeError(f"raw is {h}x{w}; RDDM needs heights and widths that are multiples of {m} "
                             "(pad or tile the image)")
        pats = self._patterns(patterns, b)
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        x = self.rvae.encoder_input(raw=raw.to(self.rvae.dtype), patterns=pats)
        moments = _lora.run_grouped(self.rvae, pats, self.rvae._encode, x, select=self._select)
        post = DiagonalGaussianDistribution(moments)
        z = post.sample(generator=generator) if sample else post.mode()
        return self.rvae.scale_latents(z)

    def denoise(self, z: torch.Tensor, patterns: Patterns, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """One step at ``t = config.timestep``: ``ẑ0 = (z − √(1−ᾱ)·UNet(z, t, prompt))/√ᾱ`` with each sample's UNet
        group.

        Args:
            z: scaled latent ``(B, C, h, w)``.
            patterns: one Bayer pattern or one per sample.
            prompt_embeds: ``(B, L, D)`` or ``(1, L, D)`` (shared) text-encoder hidden states.

        Returns:
            ẑ0, scaled latent ``(B, C, h, w)``.
        """
        check_bchw(z, "z")
        b = z.shape[0]
        pats = self._patterns(patterns, b)
        emb = self._embeds(prompt_embeds, b)
        t = torch.full((b,), self.config.timestep, device=z.device, dtype=torch.long)

        def run(zz, ee, tt):
            return self.unet(zz, tt, encoder_hidden_states=ee).sample

        out = _lora.run_grouped(self.unet, pats, run, z.to(self.dtype), emb, t, select=self._select)
        # the one-step formula in float32 (1/√ᾱ_999 ≈ 15 amplifies bf16 rounding), returned in the model's dtype
        return predict_x0(out.float(), z.float(), self.alpha_bar, self.prediction_type).to(out.dtype)

    def _embeds(self, prompt_embeds: torch.Tensor, batch: int) -> torch.Tensor:
        if not isinstance(prompt_embeds, torch.Tensor) or prompt_embeds.dim() != 3:
            raise ShapeError(f"prompt_embeds must be a (B, L, D) tensor, got "
                             f"{getattr(prompt_embeds, 'shape', type(prompt_embeds).__name__)}")
        d = self.unet.config.cross_attention_dim
        if prompt_embeds.shape[-1] != d:
            raise ShapeError(f"prompt_embeds have width {prompt_embeds.shape[-1]}, the UNet expects {d} (use the "
                             "text encoder of the same SD folder)")
        if prompt_embeds.shape[0] == 1 and batch != 1:
            prompt_embeds = prompt_embeds.expand(batch, -1, -1)
        elif prompt_embeds.shape[0] != batch:
            raise ShapeError(f"prompt_embeds has batch {prompt_embeds.shape[0]}, the latents {batch} (or give 1)")
        return prompt_embeds.to(device=self.device, dtype=self.dtype)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Scaled latent → linear RGB ``(B, 3, f·h, f·w)`` through the frozen RVAE decoder, ``(y+1)/2``, not
        clipped."""
        return self.rvae.decode_linear(self.rvae.unscale_latents(z0.to(self.rvae.dtype)))

    def forward(self, raw: torch.Tensor, patterns: Patterns, prompt_embeds: torch.Tensor,
                generator: torch.Generator | None = None) -> RDDMOutput:
        """raw ``(B, 1, H, W)`` in [0, 1] + patterns + prompt embeddings → :class:`RDDMOutput` (linear, ẑ0).

        In training mode with ``config.sample_posterior`` the latent is a posterior sample (from ``generator``);
        otherwise the posterior mode (deterministic).
        """
        sample = self.training and self.config.sample_posterior
        z = self.encode(raw, patterns, generator=generator, sample=sample)
        z0 = self.denoise(z, patterns, prompt_embeds)
        return RDDMOutput(linear=self.decode(z0), latent=z0)

    # ------------------------------------------------------------------------------------------ training

    def lora_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every CMB LoRA weight of the encoder and the UNet (names prefixed with
        ``rvae.``/``unet.``), in a fixed order."""
        out = []
        for prefix, m in (("rvae", self.rvae), ("unet", self.unet)):
            names = _lora.cmb_adapter_names(m)
            out += [(f"{prefix}.{n}", p) for n, p in m.named_parameters()
                    if "lora_" in n and any(f".{a}." in n for a in names)]
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The CMB LoRA parameters of the encoder and the UNet only (what the optimizer gets)."""
        return [p for _, p in self.lora_named_parameters()]

    def enable_gradient_checkpointing(self) -> None:
        """Gradient checkpointing in the RVAE and the UNet that replays each block with the LoRA group it ran with
        (:func:`rddm.lora.enable_gradient_checkpointing`; less memory, ~30 % slower, same gradients)."""
        _lora.enable_gradient_checkpointing(self.rvae)
        _lora.enable_gradient_checkpointing(self.unet)

    def disable_gradient_checkpointing(self) -> None:
        self.rvae.disable_gradient_checkpointing()
        self.unet.disable_gradient_checkpointing()

    def train(self, mode: bool = True) -> RDDM:
        """As ``nn.Module.train``; training needs unmerged groups, so it unmerges first."""
        if mode and self._merged is not None:
            self.unmerge_lora()
        return super().train(mode)

    # ------------------------------------------------------------------------------------------ merge

    def _merge(self, name: str) -> None:
        for m in (self.rvae, self.unet):
            _lora.merge_adapter(m, name)
        self._merged = name

    def merge_lora(self, pattern: Pattern | str) -> None:
        """Fold ``pattern``'s groups (or the all-in-one group) into the encoder's and UNet's weights (inference).

        While merged, batches of another pattern re-merge that pattern's groups (one merge per pattern change),
        so outputs stay correct. Training mode unmerges.
        """
        self._patterns(pattern, 1)
        self._merge(_lora.group_for(self.unet, pattern))

    def unmerge_lora(self) -> None:
        """Undo :meth:`merge_lora` (plain base weights + active groups again)."""
        for m in (self.rvae, self.unet):
            _lora.unmerge_adapters(m)
        self._merged = None

    @property
    def merged_group(self) -> str | None:
        """The adapter currently merged (``cmb_RGGB``...), or ``None``."""
        return self._merged

    # ------------------------------------------------------------------------------------------ size

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: ``encoder`` (RVAE encoder + quant_conv), ``decoder``, ``unet`` (base weights), ``lora``
        (all CMB groups) and ``total``. The paper's Table 2 (1294 M) also counts the text encoder (~340 M for
        SD-2.1's OpenCLIP-H), which RDDM does not own."""
        lora = sum(p.numel() for p in self.trainable_parameters())
        counts = {"encoder": 0, "decoder": 0, "unet": 0}
        for n, p in self.rvae.named_parameters():
            if "lora_" in n:
                continue
            counts["decoder" if n.startswith(("decoder.", "post_quant_conv.")) else "encoder"] += p.numel()
        counts["unet"] = sum(p.numel() for n, p in self.unet.named_parameters() if "lora_" not in n)
        counts["lora"] = lora
        counts["total"] = sum(counts.values())
        return counts

    def flops(self, height: int = 512, width: int = 512, prompt_len: int = 77) -> int:
        """FLOPs (2 per multiply-add) of one forward pass at ``height×width``, counted on a real run by
        :func:`rddm.models.flops.count_flops` (attention counted the same way on every torch version)."""
        from .flops import count_flops

        raw = torch.zeros(1, 1, height, width, device=self.device, dtype=self.dtype)
        emb = torch.zeros(1, prompt_len, self.unet.config.cross_attention_dim, device=self.device, dtype=self.dtype)
        return count_flops(self.forward, raw, self.config.patterns[0], emb)
