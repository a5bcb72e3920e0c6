"""RVAE — the RAW-domain VAE (paper §3.2): encodes a RAW mosaic (or a linear image), decodes linear RGB.
See ``docs/training.md``."""

from __future__ import annotations

import inspect
import os
import shutil
import warnings
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from rawsynth._checks import check_bchw
from rawsynth.errors import ConfigError, ShapeError
from rawsynth.mns import Pattern, as_patterns, cfa_masks

from .. import lora as _lora
from ..errors import WeightsError
from ._io import resolve_model_dir

__all__ = ["RVAE", "INPUT_MODES", "load_sd_vae"]

#: ``input_mode`` → encoder input channels.
INPUT_MODES = {"cfa_masked": 3, "cfa_masked_with_mask": 6}

_SD_FIX = ("pass --sd-model the local Stable Diffusion 2.1 folder (the one holding model_index.json and vae/), "
           "or the VAE folder itself (config.json + diffusion_pytorch_model.safetensors)")


def load_sd_vae(path: str | os.PathLike, subfolder: str | None = None) -> AutoencoderKL:
    """The ``AutoencoderKL`` of a local diffusers folder: a pipeline folder (its ``vae/`` is read, like
    ``AutoencoderKL.from_pretrained(path, subfolder="vae")``) or a VAE folder. Never downloads.

    Raises:
        WeightsError: no such folder, no VAE in it, or unreadable weights.
    """
    root, sub = resolve_model_dir(path, subfolder, "vae", ("AutoencoderKL",), "diffusers AutoencoderKL", _SD_FIX)
    try:
        return AutoencoderKL.from_pretrained(str(root), subfolder=sub, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"cannot load the VAE ({type(e).__name__}: {str(e).splitlines()[0]})",
                           path=root / sub if sub else root, fix=_SD_FIX) from None



class RVAE(AutoencoderKL):
    """The RAW-domain VAE: an ``AutoencoderKL`` plus ``input_mode`` (see ``docs/training.md``).

    The constructor takes ``AutoencoderKL``'s arguments and ``input_mode``: ``"cfa_masked"`` (``in_channels``
    3) or ``"cfa_masked_with_mask"`` (``in_channels`` 6).

    Example:
        >>> import torch
        >>> vae = RVAE(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
        ...            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        >>> vae.encode_raw(torch.rand(2, 1, 32, 32), ["RGGB", "BGGR"]).mode().shape
        torch.Size([2, 4, 16, 16])
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
                 up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",), block_out_channels: tuple[int, ...] = (64,),
                 layers_per_block: int = 1, act_fn: str = "silu", latent_channels: int = 4, norm_num_groups: int = 32,
                 sample_size: int = 32, scaling_factor: float = 0.18215, shift_factor: float | None = None,
                 latents_mean: tuple[float, ...] | None = None, latents_std: tuple[float, ...] | None = None,
                 force_upcast: bool = True, use_quant_conv: bool = True, use_post_quant_conv: bool = True,
                 mid_block_add_attention: bool = True, input_mode: str = "cfa_masked"):
        if input_mode not in INPUT_MODES:
            raise ConfigError(f"input_mode must be one of {sorted(INPUT_MODES)}, got {input_mode!r}")
        if in_channels != INPUT_MODES[input_mode]:
            raise ConfigError(f"input_mode {input_mode!r} needs in_channels={INPUT_MODES[input_mode]}, "
                             f"got {in_channels}")
        if out_channels != 3:
            raise ConfigError(f"the RVAE decodes linear RGB: out_channels must be 3, got {out_channels}")
        super().__init__(in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
                         up_block_types=up_block_types, block_out_channels=block_out_channels,
                         layers_per_block=layers_per_block, act_fn=act_fn, latent_channels=latent_channels,
                         norm_num_groups=norm_num_groups, sample_size=sample_size, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, latents_mean=latents_mean, latents_std=latents_std,
                         force_upcast=force_upcast, use_quant_conv=use_quant_conv,
                         use_post_quant_conv=use_post_quant_conv, mid_block_add_attention=mid_block_add_attention)

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_vae(cls, vae: AutoencoderKL, input_mode: str = "cfa_masked") -> RVAE:
        """An RVAE with the architecture and weights of ``vae`` (``conv_in`` widened per ``input_mode``)."""
        if input_mode not in INPUT_MODES:
            raise WeightsError(f"input_mode must be one of {sorted(INPUT_MODES)}, got {input_mode!r}")
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        cfg = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        dropped = sorted(set(cfg) - accepted)
        if dropped:
            warnings.warn(f"RVAE.from_vae: ignoring AutoencoderKL config keys it does not know: {dropped}",
                          stacklevel=2)
        cfg = {k: v for k, v in cfg.items() if k in accepted}
        if cfg.get("in_channels", 3) != 3:
            raise WeightsError(f"the VAE takes {cfg['in_channels']} input channels; an sRGB VAE (3) is expected")
        cfg.update(in_channels=INPUT_MODES[input_mode], input_mode=input_mode)
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the global RNG untouched
            model = cls(**cfg)
        sd = dict(vae.state_dict())
        w = sd["encoder.conv_in.weight"]
        if w.shape[1] != model.config.in_channels:
            wide = torch.zeros(w.shape[0], model.config.in_channels, *w.shape[2:], dtype=w.dtype)
            wide[:, : w.shape[1]] = w
            sd["encoder.conv_in.weight"] = wide
        model.load_state_dict(sd, strict=True)
        return model if vae.dtype == torch.float32 else model.to(dtype=vae.dtype)

    @classmethod
    def from_sd(cls, path: str | os.PathLike, input_mode: str = "cfa_masked") -> RVAE:
        """An RVAE initialised from the VAE of a local SD-2.1 folder (see :func:`load_sd_vae`)."""
        return cls.from_vae(load_sd_vae(path), input_mode)

    # ------------------------------------------------------------------------------------------ inputs

    def encoder_input(self, linear: torch.Tensor | None = None, raw: torch.Tensor | None = None,
                      patterns=None) -> torch.Tensor:
        """The encoder's input for a linear image ``(B, 3, H, W)`` or a RAW mosaic ``(B, 1, H, W)`` + patterns,
        both in ``[0, 1]`` (see ``input_mode`` in ``docs/training.md``)."""
        if (linear is None) == (raw is None):
            raise ShapeError("give exactly one of linear= and raw=")
        with_mask = self.config.input_mode == "cfa_masked_with_mask"
        if linear is not None:
            check_bchw(linear, "linear", channels=3)
            v = 2 * linear - 1
            return torch.cat([v, torch.ones_like(v)], 1) if with_mask else v
        check_bchw(raw, "raw", channels=1)
        b, _, h, w = raw.shape
        m = cfa_masks(as_patterns(patterns, b, "patterns"), b, h, w, raw.device, raw.dtype)
        v = (2 * raw - 1) * m
        return torch.cat([v, m], 1) if with_mask else v

    # ------------------------------------------------------------------------------------------ encode/decode

    def encode_linear(self, linear: torch.Tensor) -> DiagonalGaussianDistribution:
        """Posterior of a linear image ``(B, 3, H, W)`` in ``[0, 1]`` (CMB LoRA groups, if any, are off)."""
        with _lora.adapters_disabled(self):
            return DiagonalGaussianDistribution(self._encode(self.encoder_input(linear=linear)))

    def encode_raw(self, raw: torch.Tensor, patterns) -> DiagonalGaussianDistribution:
        """Posterior of a RAW mosaic ``(B, 1, H, W)`` in ``[0, 1]``.

        With CMB LoRA groups, each sample is encoded with its pattern's group: the batch is split by pattern,
        each group runs with its adapter active, and the results are put back in the input order.

        Raises:
            ConfigError: a sample's pattern has no CMB group (when the model has groups).
        """
        pats = as_patterns(patterns, raw.shape[0], "patterns")
        x = self.encoder_input(raw=raw, patterns=pats)
        if not _lora.cmb_groups(self):
            return DiagonalGaussianDistribution(self._encode(x))
        return DiagonalGaussianDistribution(_lora.run_grouped(self, pats, self._encode, x))  # (all-in-one too)

    def decode_linear(self, z: torch.Tensor) -> torch.Tensor:
        """Decode (unscaled) latents to linear RGB ``(B, 3, 8h, 8w)`` (``(y + 1)/2``, not clipped)."""
        return (self.decode(z).sample + 1) / 2

    def reconstruct(self, linear: torch.Tensor, generator: torch.Generator | None = None,
                    sample_posterior: bool = True) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        """``D(E(x))`` of a linear image (stage 1): ``(reconstruction, posterior)``."""
        posterior = self.encode_linear(linear)
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode_linear(z), posterior

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        """``z · scaling_factor`` (Eq. 4: unit variance), what the diffusion network sees."""
        return z * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`scale_latents`."""
        return z / self.config.scaling_factor

    def last_decoder_layer(self) -> torch.nn.Parameter:
        """The weight of the decoder's last layer, where Eq. 5's adaptive GAN weight is taken."""
        conv = self.decoder.conv_out
        return getattr(conv, "base_layer", conv).weight

    # ------------------------------------------------------------------------------------------ CMB LoRA

    @property
    def cmb_patterns(self) -> list[Pattern]:
        """The patterns that have a CMB LoRA group."""
        return _lora.cmb_patterns(self)

    def add_cmb_lora(self, patterns=tuple(Pattern), rank: int = 4, alpha: float | None = None,
                     target_modules=_lora.ENCODER_TARGETS) -> list[str]:
        """Add a CMB LoRA group (rank ``rank``) per pattern to the encoder (:func:`rddm.lora.add_cmb_lora`)."""
        return _lora.add_cmb_lora(self, patterns, rank=rank, alpha=alpha, target_modules=target_modules)

    # ------------------------------------------------------------------------------------------ save/load

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's own weights under their plain names (LoRA layers unwrapped, adapters left out)."""
        return {k.replace(".base_layer.", "."): v for k, v in self.state_dict().items() if "lora_" not in k}

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True, **kwargs) -> None:
        """Save config + safetensors weights (loadable by ``AutoencoderKL`` too when ``input_mode`` is
        ``cfa_masked``) and, if any, the CMB LoRA groups under ``cmb_lora/``."""
        out = Path(save_directory)
        if not self.cmb_patterns:
            super().save_pretrained(out, is_main_process=is_main_process, **kwargs)
            if is_main_process and (out / _lora.CMB_DIR).is_dir():
                shutil.rmtree(out / _lora.CMB_DIR)
            return
        if not is_main_process:
            return
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        self.save_config(out)
        save_file({k: v.detach().contiguous() for k, v in self.base_state_dict().items()},
                  str(out / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        if (out / _lora.CMB_DIR).is_dir():
            shutil.rmtree(out / _lora.CMB_DIR)
        _lora.save_cmb_lora(self, out / _lora.CMB_DIR)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> RVAE:
        """Load an RVAE folder (local only), with its CMB LoRA groups if it has any.

        ``pretrained_model_name_or_path`` may also be a ``rddm train-rvae`` output folder (its ``rvae/`` is used).

        Raises:
            WeightsError: not a local RVAE folder.
        """
        fix = "pass the folder written by `rddm train-rvae` (OUT/rvae, or OUT itself)"
        root, sub = resolve_model_dir(pretrained_model_name_or_path, kwargs.pop("subfolder", None), "rvae",
                                      ("RVAE",), "RVAE", fix)
        kwargs.setdefault("local_files_only", True)
        model = super().from_pretrained(str(root), subfolder=sub, **kwargs)
        folder = (root / sub if sub else root) / _lora.CMB_DIR
        if folder.is_dir():
            _lora.load_cmb_lora(model, folder)
        return model
