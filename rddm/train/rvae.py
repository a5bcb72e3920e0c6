"""``rddm train-rvae``: stage 1 of the RVAE (paper Eq. 5; setting 6's first half, Fig. 4a). See ``docs/training.md``."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..config import RVAETrainConfig
from ..errors import ConfigError
from ..losses import (DualDomainLoss, adaptive_gan_weight, generator_gan_loss, hinge_d_loss, isp_from_meta, to_srgb,
                      vanilla_d_loss)
from . import core, recipe
from .ema import build_ema
from .guard import NonFiniteGuard, guarded_step
from .step_end import StepEnd
from .validation import build_validator

__all__ = ["train_rvae", "build_rvae", "build_discriminator", "build_rec_loss", "Stage1", "generator_losses"]


class Stage1(nn.Module):
    """What DDP wraps for stage 1: ``forward(linear, generator, sample_posterior) -> (reconstruction, kl)``,
    ``kl`` being the batch mean of the per-sample KL sums (LDM)."""

    def __init__(self, rvae):
        super().__init__()
        self.rvae = rvae

    def forward(self, linear: torch.Tensor, generator: torch.Generator | None = None, sample_posterior: bool = True):
        rec, posterior = self.rvae.reconstruct(linear, generator=generator, sample_posterior=sample_posterior)
        return rec, posterior.kl().mean()


def build_rvae(cfg: RVAETrainConfig):
    """The RVAE to train: from ``model.init`` (an RVAE folder), ``model.sd_model`` (a local SD folder) or a random
    ``model.vae_config``."""
    from ..models.rvae import RVAE

    m = cfg.model
    if m.init is not None:
        return RVAE.from_pretrained(m.init)
    if m.sd_model is not None:
        return RVAE.from_sd(m.sd_model, m.input_mode)
    if m.vae_config is not None:
        from diffusers import AutoencoderKL

        try:
            with core.seeded(cfg.seed):
                vae = AutoencoderKL(**m.vae_config)
        except TypeError as e:
            raise ConfigError(f"model.vae_config: {e}", fix="use AutoencoderKL constructor arguments") from None
        return RVAE.from_vae(vae, m.input_mode)
    raise ConfigError("no RVAE to start from", fix="pass --sd-model DIR (a local Stable Diffusion 2.1 folder), or set "
                      "model.sd_model, model.init or model.vae_config in the config")


def build_discriminator(cfg: RVAETrainConfig):
    """The patch discriminator (seeded)."""
    from ..models.discriminator import PatchDiscriminator

    with core.seeded(cfg.seed + 1):
        return PatchDiscriminator(3, cfg.loss.disc_channels, cfg.loss.disc_layers)


def build_rec_loss(cfg: RVAETrainConfig) -> DualDomainLoss:
    """``L_rec`` (L1 linear + L1 sRGB + LPIPS) of the config; LPIPS weights from ``loss.lpips_weights``."""
    lc = cfg.loss
    lp = None
    if lc.lpips > 0:
        if lc.lpips_weights is None:
            raise ConfigError("loss.lpips > 0 needs loss.lpips_weights, a local folder with the LPIPS weight files",
                              fix="set loss.lpips_weights (or --lpips-weights DIR; see docs/training.md), or "
                                  "set loss.lpips: 0")
        from ..lpips import LPIPS

        lp = LPIPS.from_folder(lc.lpips_weights, lc.lpips_net)
    return DualDomainLoss(l1_linear=lc.l1_linear, l1_srgb=lc.l1_srgb, lpips=lc.lpips, lpips_model=lp,
                          lpips_domain=lc.lpips_domain)


def _gan_input(x: torch.Tensor, isp, domain: str) -> torch.Tensor:
    return 2 * (to_srgb(x, isp) if domain == "srgb" else x) - 1


def generator_losses(stage1: nn.Module, rvae, disc: nn.Module | None, rec_loss: DualDomainLoss, cfg: RVAETrainConfig,
                     batch: dict, device, generator=None) -> tuple[torch.Tensor, dict, torch.Tensor, object]:
    """The VAE's loss on one batch: ``(loss, values to log, reconstruction, isp)``.

    ``disc`` is the (unwrapped) discriminator when the GAN is active, else ``None``.
    """
    lc = cfg.loss
    hq = batch["hq"].to(device, non_blocking=True)
    isp = isp_from_meta(batch["meta"], device=device)
    rec, kl = stage1(hq, generator, lc.sample_posterior)
    out = rec_loss(rec, hq, isp)
    loss = out.total + lc.kl * kl
    values = {"rec_loss": out.total.detach(), "kl": kl.detach(), **{k: v.detach() for k, v in out.terms.items()}}
    if disc is not None:
        g_loss = generator_gan_loss(disc(_gan_input(rec, isp, lc.gan_domain)))
        lam = adaptive_gan_weight(out.total, g_loss, rvae.last_decoder_layer())
        loss = loss + lc.gan * lam * g_loss
        values.update(g_loss=g_loss.detach(), gan_weight=lam * lc.gan)
    values["loss"] = loss.detach()
    return loss, values, rec, isp


def train_rvae(cfg: RVAETrainConfig, out: str | os.PathLike, *, resume: str | None = None, device: str = "auto",
               progress: bool = True) -> dict:
    """Train the RVAE's stage 1; returns the summary also written to ``OUT/train_summary.json``.

    Arguments as for :func:`rddm.train.ddnet.train_ddnet`.
    """
    given = cfg
    with core.training_process(given, device) as (env, cfg):  # cfg: global_batch_size -> per-process batch, accum.
        recipe.check_terms_activate(cfg, {"loss.gan (loss.disc_start)": (cfg.loss.gan, cfg.loss.disc_start)})
        data = core.resolve_data(cfg.data)  # shards or on-the-fly sources: fails early, before any write
        rec_loss = build_rec_loss(cfg).to(env.device)
        rvae = build_rvae(cfg) if resume is None else None  # fails early on a bad SD folder, before any write
        validator = build_validator(cfg.validation, "train-rvae", env, out, lpips_folder=cfg.loss.lpips_weights,
                                    show_raw=False, data=cfg.data)
        run = core.Run.start(out, given, env, resume)
        if rvae is None:  # resuming: the architecture is in the checkpoint; the weights are loaded below
            from ..models.rvae import RVAE

            with core.seeded(cfg.seed):
                rvae = RVAE.from_config(RVAE.load_config(str(run.resume_from / "rvae")))
        disc = build_discriminator(cfg)
        if cfg.gradient_checkpointing:
            rvae.enable_gradient_checkpointing()
        rvae.to(env.device).train()
        disc.to(env.device).train()
        opt = core.build_optimizer(rvae.parameters(), cfg.optim)
        sched = core.build_scheduler(opt, cfg.optim, cfg.max_steps)
        d_opt = core.build_optimizer(disc.parameters(), cfg.disc_optim)
        d_sched = core.build_scheduler(d_opt, cfg.disc_optim, max(cfg.max_steps - cfg.loss.disc_start, 1))
        scaler = core.make_scaler(env, cfg.mixed_precision)
        guard = NonFiniteGuard(env, cfg.max_nonfinite, "rddm train-rvae")
        states = {"optimizer": opt, "scheduler": sched, "disc_optimizer": d_opt, "disc_scheduler": d_sched,
                  "scaler": scaler, "guard": guard}
        models = {"rvae": rvae, "discriminator": disc}
        ema = build_ema(cfg.ema, rvae.named_parameters())
        if ema is not None:
            states["ema"] = ema
        step, position = 0, None
        if run.resume_from is not None:
            step, position = run.load_checkpoint(models, states)
        stage1 = core.wrap_ddp(Stage1(rvae), env)
        disc_ddp = core.wrap_ddp(disc, env)
        disc.requires_grad_(False)
        stream = core.make_stream(data, cfg.batch_size, cfg.seed, position, env)
        log = core.TrainLogger(run, step, progress, desc="train-rvae")
        d_loss_fn = hinge_d_loss if cfg.loss.disc_loss == "hinge" else vanilla_d_loss
        accum, last = cfg.grad_accum_steps, {}

        def predict(b):
            with core.autocast(env, cfg.mixed_precision):
                return rvae.reconstruct(b["hq"].to(env.device), sample_posterior=False)[0].float()

        end = StepEnd(run, models, states, ema, validator, predict, [rvae], log, cfg.max_steps, cfg.save_every)
        try:
            while step < cfg.max_steps:
                gan = cfg.loss.gan > 0 and step >= cfg.loss.disc_start
                sums: dict[str, torch.Tensor] = {}
                for micro in range(accum):
                    batch = stream.next()
                    gen = core.step_generator(cfg.seed, env.rank, step, micro, env.device)
                    sync_skip = micro < accum - 1
                    with core.no_sync(stage1, sync_skip):
                        with core.autocast(env, cfg.mixed_precision):
                            loss, values, rec, isp = generator_losses(stage1, rvae, disc if gan else None, rec_loss,
                                                                      cfg, batch, env.device, gen)
                        scaler.scale(loss / accum).backward()
                    if gan:
                        hq = batch["hq"].to(env.device, non_blocking=True)
                        disc.requires_grad_(True)
                        with core.no_sync(disc_ddp, sync_skip), core.autocast(env, cfg.mixed_precision):
                            both = torch.cat([_gan_input(hq, isp, cfg.loss.gan_domain),
                                              _gan_input(rec.detach(), isp, cfg.loss.gan_domain)])
                            logits = disc_ddp(both).float()
                            real, fake = logits.chunk(2)
                            d_loss = d_loss_fn(real, fake)
                            scaler.scale(d_loss / accum).backward()
                        disc.requires_grad_(False)
                        values.update(d_loss=d_loss.detach(), logits_real=real.detach().mean(),
                                      logits_fake=fake.detach().mean())
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v.float() / accum
                norm, ok = guarded_step(opt, scaler, cfg.optim.max_grad_norm, sums["loss"], guard)
                vae_stepped = ok
                if gan:
                    _, d_ok = guarded_step(d_opt, scaler, cfg.disc_optim.max_grad_norm, sums["d_loss"], guard)
                    ok = ok and d_ok
                    d_sched.step()
                scaler.update()
                sched.step()
                opt.zero_grad(set_to_none=True)
                d_opt.zero_grad(set_to_none=True)
                step += 1
                sums["lr"] = sched.get_last_lr()[0]
                sums.update(grad_norm=norm, nonfinite=float(not ok), nonfinite_skipped=guard.skipped + (not ok))
                last = log.log(step, sums, force=not ok) or last
                guard.end_step(step, not ok)
                end(step, vae_stepped, stream.position)
        finally:
            log.close()
        return end.finish(step, {"stage": "rvae", "last_logged": last})
