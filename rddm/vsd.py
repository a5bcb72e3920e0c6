"""VSD regulariser — variational score distillation as OSEDiff does it (paper Eq. 6's ``L_VSD``).
See ``docs/rddm.md``."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from . import lora as _lora
from .errors import ConfigError, WeightsError
from .schedule import PREDICTION_TYPES, add_noise, predict_x0, prediction_target

__all__ = ["VSDRegularizer", "VSD_ADAPTER", "distribution_matching_loss"]

#: Adapter name of the update UNet's LoRA.
VSD_ADAPTER = "vsd"
CONFIG_NAME = "vsd_config.json"
LORA_DIR = "vsd_lora"


def distribution_matching_loss(latents: torch.Tensor, x0_update: torch.Tensor, x0_fix: torch.Tensor) -> torch.Tensor:
    """OSEDiff's VSD loss from the two ``x0`` predictions (all ``(B, C, h, w)``): ``MSE(z, (z − grad).detach())``
    with ``grad = (x0_update − x0_fix)/mean|z − x0_fix|`` (per sample; non-finite values of ``grad`` → 0).
    Computed in float32."""
    z = latents.float()
    fix, upd = x0_fix.float(), x0_update.float()
    w = (z.detach() - fix).abs().mean(dim=tuple(range(1, z.dim())), keepdim=True)
    grad = torch.nan_to_num((upd - fix) / w, nan=0.0, posinf=0.0, neginf=0.0)
    return F.mse_loss(z, (z - grad).detach())


class VSDRegularizer(nn.Module):
    """Frozen CFG UNet + LoRA update UNet for the VSD loss (see ``docs/rddm.md``).

    Args:
        unet_base: the generator's ``UNet2DConditionModel`` (:attr:`RDDM.unet`); gets a ``vsd`` adapter (shared)
            or is deep-copied first (``share_base=False``).
        alphas_cumprod: ``(T,)`` ᾱ of the SD noise schedule (:attr:`RDDM.alphas_cumprod`).
        lora_rank: rank of the update LoRA (OSEDiff: the generator's, 4).
        cfg_scale: classifier-free guidance of the frozen UNet (7.5).
        t_min: ``t ~ U[t_min, t_max)`` for the generator loss (20).
        t_max: see ``t_min`` (980, exclusive).
        lora_alpha: LoRA alpha (default: the rank; OSEDiff: peft's default 8).
        lora_init: ``kaiming`` (peft's default) or ``gaussian`` (OSEDiff) initialisation of the update LoRA.
        target_modules: the update LoRA's targets (OSEDiff's UNet list).
        prediction_type: the UNet's parametrisation (:attr:`RDDM.prediction_type`).
        diffusion_t_range: ``t`` range of :meth:`diffusion_loss` (OSEDiff: the whole schedule, ``[0, T)``).
        share_base: add the adapter to ``unet_base`` itself (default) instead of a deep copy.

    Raises:
        ConfigError: bad ranges or scales.
    """

    def __init__(self, unet_base: nn.Module, alphas_cumprod: torch.Tensor, lora_rank: int = 4, cfg_scale: float = 7.5,
                 t_min: int = 20, t_max: int = 980, lora_alpha: float | None = None,
                 target_modules: str = _lora.UNET_TARGETS, prediction_type: str = "epsilon", lora_init: str = "kaiming",
                 diffusion_t_range: tuple[int, int] | None = None, share_base: bool = True):
        super().__init__()
        n = int(alphas_cumprod.numel())
        if not 0 <= t_min < t_max <= n:
            raise ConfigError(f"VSD needs 0 <= t_min < t_max <= {n}, got t_min={t_min}, t_max={t_max}")
        lo, hi = diffusion_t_range if diffusion_t_range is not None else (0, n)
        if not 0 <= lo < hi <= n:
            raise ConfigError(f"diffusion_t_range must satisfy 0 <= lo < hi <= {n}, got {(lo, hi)}")
        if not cfg_scale >= 0:
            raise ConfigError(f"cfg_scale must be >= 0, got {cfg_scale}")
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.cfg_scale, self.t_min, self.t_max = float(cfg_scale), int(t_min), int(t_max)
        self.diffusion_t_range = (int(lo), int(hi))
        self.prediction_type = prediction_type
        self.share_base = bool(share_base)
        self.lora_rank, self.lora_alpha, self.target_modules = lora_rank, lora_alpha, target_modules
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().to(torch.float32).clone(), persistent=False)
        if share_base:
            self.__dict__["unet"] = unet_base  # shared with the generator: not a submodule (not saved/moved here)
        else:
            self.unet = copy.deepcopy(unet_base)
            _lora.unmerge_adapters(self.unet)
            names = list(getattr(self.unet, "peft_config", None) or {})
            if names:  # the copy keeps only the base weights
                self.unet.delete_adapters(names)
            self.unet.requires_grad_(False)
        if VSD_ADAPTER in (getattr(self.unet, "peft_config", None) or {}):
            raise ConfigError(f"the UNet already has a {VSD_ADAPTER!r} adapter (one VSDRegularizer per UNet)")
        self.lora_init = lora_init
        _lora.add_adapter(self.unet, VSD_ADAPTER, rank=lora_rank, alpha=lora_alpha, target_modules=target_modules,
                          init_lora_weights=lora_init)

    def _apply(self, fn, recurse=True):
        # ``.to(dtype)``/``.half()`` cast floating buffers; the noise schedule stays float32 (ᾱ_999 ≈ 0.0047 loses
        # ~0.4 % in bf16, amplified by 1/√ᾱ), only following the device
        ac = self.alphas_cumprod
        super()._apply(fn, recurse)
        self.alphas_cumprod = ac.to(device=self.alphas_cumprod.device, dtype=torch.float32)
        return self

    # ------------------------------------------------------------------------------------------ helpers

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The update UNet's LoRA parameters (the regulariser optimizer's)."""
        return [p for n, p in self.unet.named_parameters() if "lora_" in n and f".{VSD_ADAPTER}." in n]

    def _draw(self, z: torch.Tensor, lo: int, hi: int, generator: torch.Generator | None):
        dev = generator.device if generator is not None else z.device
        t = torch.randint(lo, hi, (z.shape[0],), generator=generator, device=dev).to(z.device)
        noise = torch.randn(z.shape, generator=generator, device=dev, dtype=torch.float32).to(z.device)
        return t, noise

    def _unet(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        dt = self.unet.dtype
        return self.unet(x.to(dt), t, encoder_hidden_states=emb.to(device=x.device, dtype=dt)).sample.float()

    @staticmethod
    def _embeds(e: torch.Tensor, b: int) -> torch.Tensor:
        if e.dim() != 3 or e.shape[0] not in (1, b):
            raise ConfigError(f"prompt embeddings must be (B, L, D) or (1, L, D) with B = {b}, got {tuple(e.shape)}")
        return e.expand(b, -1, -1) if e.shape[0] != b else e

    def update_x0(self, noisy: torch.Tensor, t: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """x0 predicted by the update UNet (base + the ``vsd`` adapter only), float32."""
        with _lora.active_adapter(self.unet, VSD_ADAPTER):
            out = self._unet(noisy, t, prompt_embeds)
        return predict_x0(out, noisy.float(), self.alphas_cumprod[t], self.prediction_type)

    def frozen_x0(self, noisy: torch.Tensor, t: torch.Tensor, prompt_embeds: torch.Tensor,
                  neg_embeds: torch.Tensor) -> torch.Tensor:
        """x0 predicted by the frozen UNet (every adapter disabled) with classifier-free guidance, float32."""
        b = noisy.shape[0]
        with _lora.adapters_disabled(self.unet):
            eps = self._unet(torch.cat([noisy, noisy]), torch.cat([t, t]),
                             torch.cat([self._embeds(neg_embeds, b), self._embeds(prompt_embeds, b)]))
        uncond, cond = eps.chunk(2)
        guided = uncond + self.cfg_scale * (cond - uncond)
        return predict_x0(guided, noisy.float(), self.alphas_cumprod[t], self.prediction_type)

    # ------------------------------------------------------------------------------------------ losses

    def generator_loss(self, z0_scaled: torch.Tensor, prompt_embeds: torch.Tensor, neg_embeds: torch.Tensor,
                       generator: torch.Generator | None = None,
                       return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict]:
        """L_VSD of the generator's latents (gradient only through ``z0_scaled``).

        Args:
            z0_scaled: the generator's ẑ0 (scaled latent, ``(B, C, h, w)``, requires grad).
            prompt_embeds: ``(B, L, D)`` or ``(1, L, D)``: the conditional branch's (and the update UNet's) prompt.
            neg_embeds: the same for the unconditional branch of CFG (the negative prompt; OSEDiff's list).
            generator: the source of ``t`` and the noise (same generator state → same loss).
            return_info: also return ``{"t": (B,) timesteps}``.

        Returns:
            The scalar float32 loss, or ``(loss, info)`` with ``return_info``.
        """
        b = z0_scaled.shape[0]
        prompt_embeds = self._embeds(prompt_embeds, b)
        t, noise = self._draw(z0_scaled, self.t_min, self.t_max, generator)
        with torch.no_grad():
            noisy = add_noise(z0_scaled.detach().float(), noise, self.alphas_cumprod[t])
            x0_update = self.update_x0(noisy, t, prompt_embeds)
            x0_fix = self.frozen_x0(noisy, t, prompt_embeds, neg_embeds)
        loss = distribution_matching_loss(z0_scaled, x0_update, x0_fix)
        return (loss, {"t": t}) if return_info else loss

    def diffusion_loss(self, z0_scaled: torch.Tensor, prompt_embeds: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The update UNet's denoising loss on the generator's (detached) latents: MSE of its ε (or v) prediction,
        ``t ~ U[diffusion_t_range)``. Gradients reach only :meth:`trainable_parameters`."""
        z = z0_scaled.detach().float()
        emb = self._embeds(prompt_embeds.detach(), z.shape[0])
        t, noise = self._draw(z, *self.diffusion_t_range, generator)
        a = self.alphas_cumprod[t]
        with _lora.active_adapter(self.unet, VSD_ADAPTER):
            pred = self._unet(add_noise(z, noise, a), t, emb)
        return F.mse_loss(pred, prediction_target(z, noise, a, self.prediction_type))

    # ------------------------------------------------------------------------------------------ save/load

    def config_dict(self) -> dict:
        return {"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha, "cfg_scale": self.cfg_scale,
                "t_min": self.t_min, "t_max": self.t_max, "diffusion_t_range": list(self.diffusion_t_range),
                "prediction_type": self.prediction_type, "target_modules": self.target_modules}

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True) -> Path:
        """Write ``vsd_config.json`` + the update LoRA (``vsd_lora/``, peft format)."""
        out = Path(save_directory)
        if not is_main_process:
            return out
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f"{LORA_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _lora.save_adapter(self.unet, VSD_ADAPTER, tmp)
        shutil.rmtree(out / LORA_DIR, ignore_errors=True)
        os.replace(tmp, out / LORA_DIR)
        (out / CONFIG_NAME).write_text(json.dumps(self.config_dict(), indent=2) + "\n")
        return out

    def load_weights(self, path: str | os.PathLike) -> None:
        """Copy the update LoRA saved by :meth:`save_pretrained` into this regulariser in place (exact resume).

        Raises:
            WeightsError: not a VSD folder, or a LoRA of another shape.
        """
        root = Path(path)
        if not (root / CONFIG_NAME).is_file():
            raise WeightsError(f"not a VSD regulariser folder: no {CONFIG_NAME}", path=root,
                               fix="pass the folder written by VSDRegularizer.save_pretrained")
        _lora.load_adapter(self.unet, VSD_ADAPTER, root / LORA_DIR, add=False)

    #: The hook :func:`rddm.train.core.load_model_weights` calls when resuming a checkpoint.
    load_checkpoint_weights = load_weights
