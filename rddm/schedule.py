"""The noise schedule's maths (SD's ``alphas_cumprod``): ``x̂0`` from a UNet output, forward noising, the UNet's
training target; ``epsilon`` and ``v_prediction`` UNets. No network here (see ``docs/architecture.md``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .errors import ConfigError, WeightsError

__all__ = ["PREDICTION_TYPES", "load_alphas_cumprod", "predict_x0", "add_noise", "prediction_target"]

PREDICTION_TYPES = ("epsilon", "v_prediction")
SD_FOLDER_FIX = ("pass --sd-model the local Stable Diffusion 2.1 diffusers folder (the one holding model_index.json, "
                 "unet/ and scheduler/)")
_SD_FIX = SD_FOLDER_FIX


def load_alphas_cumprod(sd_model: str | os.PathLike) -> tuple[torch.Tensor, str]:
    """``(alphas_cumprod (T,) float32, prediction_type)`` of the noise schedule in ``sd_model/scheduler/``.

    Any diffusers scheduler config of the SD family works (PNDM, DDIM, DDPM, ...): ``ᾱ`` depends only on the beta
    schedule, read here through ``DDPMScheduler``. ``clip_sample`` is ignored: x̂0 is a latent, never clipped
    (SD-2.1's config has ``clip_sample: false``; OSEDiff's one step does not clip either).

    Raises:
        WeightsError: no ``scheduler/scheduler_config.json``.
        ConfigError: a prediction type other than ``epsilon``/``v_prediction``, or ᾱ = 0 (zero-SNR schedules).
    """
    from diffusers import DDPMScheduler

    root = Path(sd_model)
    cfg_file = root / "scheduler" / "scheduler_config.json"
    if not cfg_file.is_file():
        raise WeightsError("no noise schedule: scheduler/scheduler_config.json is missing", path=root, fix=_SD_FIX)
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"unreadable scheduler config ({e})", path=cfg_file, fix=_SD_FIX) from None
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    sched = DDPMScheduler.from_config(cfg)
    pred = sched.config.prediction_type
    if pred not in PREDICTION_TYPES:
        raise ConfigError(f"prediction_type {pred!r} is not supported (use one of {PREDICTION_TYPES})", path=cfg_file)
    ac = sched.alphas_cumprod.to(torch.float32)
    if not bool((ac > 0).all()):
        raise ConfigError("the schedule has alphas_cumprod = 0 (zero terminal SNR): x0 cannot be predicted at the "
                          "last step", path=cfg_file, fix="use the SD-2.1 scheduler config (rescale_betas_zero_snr "
                          "false)")
    return ac, pred


def _bcast(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return a.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def predict_x0(model_output: torch.Tensor, sample: torch.Tensor, alpha_bar: torch.Tensor,
               prediction_type: str = "epsilon") -> torch.Tensor:
    """The clean-sample estimate of a noisy ``sample`` at ᾱ ``alpha_bar`` (scalar or ``(B,)``).

    ``epsilon``: ``(x_t − √(1−ᾱ)·ε)/√ᾱ``; ``v_prediction``: ``√ᾱ·x_t − √(1−ᾱ)·v`` (diffusers' DDPM step).
    """
    a = _bcast(torch.as_tensor(alpha_bar), sample)
    if prediction_type == "epsilon":
        return (sample - (1 - a).sqrt() * model_output) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * sample - (1 - a).sqrt() * model_output
    raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """``√ᾱ·x0 + √(1−ᾱ)·noise`` (diffusers' ``add_noise``), ``alpha_bar`` scalar or ``(B,)``."""
    a = _bcast(torch.as_tensor(alpha_bar), x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def prediction_target(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
                      prediction_type: str = "epsilon") -> torch.Tensor:
    """What the UNet should output for ``add_noise(x0, noise, ᾱ)``: ``noise`` or ``v = √ᾱ·ε − √(1−ᾱ)·x0``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = _bcast(torch.as_tensor(alpha_bar), x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
