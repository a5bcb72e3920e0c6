"""``rddm train``: the one-step RAW diffusion restorer (paper Eq. 6, §4.1; OSEDiff's VSD machinery).
See ``docs/rddm.md``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import RDDMTrainConfig
from ..errors import ConfigError
from ..losses import DualDomainLoss, isp_from_meta
from . import core, recipe
from .ema import build_ema
from .guard import NonFiniteGuard, guarded_step
from .step_end import StepEnd
from .validation import build_validator

if TYPE_CHECKING:
    from ..models.rddm import RDDM
    from ..vsd import VSDRegularizer

__all__ = ["train_rddm", "Trainer", "build_rddm", "build_vsd", "build_rec_loss", "build_prompts", "Prompts",
           "generator_step", "regulariser_loss"]

_SD_FIX = "pass --sd-model DIR (a local Stable Diffusion 2.1 diffusers folder) or set model.sd_model in the config"


# ----------------------------------------------------------------------------------------------- building


def build_rddm(cfg: RDDMTrainConfig):
    """The restorer to train: base weights from ``model.sd_model`` (+ ``model.rvae``), new LoRA groups initialised
    under the run seed, or the groups of ``model.init``."""
    from ..models.rddm import RDDM

    m = cfg.model
    if m.sd_model is None:
        raise ConfigError("no Stable Diffusion folder given", fix=_SD_FIX)
    if m.init is not None:
        model = RDDM.from_pretrained(m.init, sd_model=m.sd_model, rvae_model=m.rvae)
        got = model.config
        want = {"lora_rank": m.lora_rank, "lora_mode": m.lora_mode, "patterns": tuple(m.patterns)}
        have = {"lora_rank": got.lora_rank, "lora_mode": got.lora_mode, "patterns": tuple(
            getattr(p, "value", p) for p in got.patterns)}
        if have != want:
            raise ConfigError(f"model.init has LoRA groups {have}, the config asks for {want}",
                              fix="make model.lora_rank/lora_mode/patterns match the init folder, or drop model.init")
        return model
    with core.seeded(cfg.seed):
        return RDDM.from_sd(m.sd_model, m.rvae, lora_rank=m.lora_rank, lora_alpha=m.lora_alpha,
                            lora_init=m.lora_init, lora_mode=m.lora_mode, patterns=tuple(m.patterns),
                            timestep=m.timestep, sample_posterior=m.sample_posterior)


def build_vsd(cfg: RDDMTrainConfig, rddm):
    """The VSD regulariser (frozen UNet + LoRA update UNet), its LoRA initialised under the run seed; ``None``
    when ``loss.vsd`` is off."""
    lc = cfg.loss
    if not (lc.vsd and lc.lambda_vsd > 0):
        return None
    from ..vsd import VSDRegularizer

    with core.seeded(cfg.seed + 1):
        return VSDRegularizer(rddm.unet, rddm.alphas_cumprod, lora_rank=lc.vsd_lora_rank, cfg_scale=lc.cfg_scale,
                              t_min=lc.t_min, t_max=lc.t_max, prediction_type=rddm.prediction_type,
                              lora_alpha=lc.vsd_lora_alpha, lora_init=lc.vsd_lora_init)


def build_rec_loss(cfg: RDDMTrainConfig) -> DualDomainLoss:
    """The reconstruction part of Eq. 6: ``λ1·MSE`` in linear space and ``λ2·(MSE + LPIPS)`` in sRGB (PTP).

    Both MSE weights carry ``loss.mse_scale`` (4 with ``mse_range: signed``: the MSE of the images mapped to
    ``[-1, 1]``, as OSEDiff computes it; :class:`DualDomainLoss` itself works on ``[0, 1]``)."""
    lc = cfg.loss
    raw = lc.lambda_raw * lc.mse_scale if lc.raw_domain else 0.0
    mse_srgb = lc.lambda_rgb * lc.rgb_mse * lc.mse_scale if lc.srgb_domain else 0.0
    lpips = lc.lambda_rgb * lc.rgb_lpips if lc.srgb_domain else 0.0
    lp = None
    if lpips > 0:
        if lc.lpips_weights is None:
            raise ConfigError("the sRGB LPIPS term needs loss.lpips_weights, a local folder with the LPIPS weight "
                              "files", fix="pass --lpips-weights DIR (see docs/training.md), or set "
                                           "loss.rgb_lpips: 0")
        from ..lpips import LPIPS

        lp = LPIPS.from_folder(lc.lpips_weights, lc.lpips_net)
    return DualDomainLoss(mse_linear=raw, mse_srgb=mse_srgb, lpips=lpips, lpips_model=lp, lpips_domain="srgb")


@dataclass
class Prompts:
    """The prompt side of a step: RAW prompt extraction → text embeddings, and the negative prompt for CFG."""

    rpe: object
    encoder: object
    negative: str

    def embeds(self, raw: torch.Tensor, patterns, isp) -> torch.Tensor:
        """``(B, L, D)`` prompt embeddings of a RAW batch (no gradient)."""
        with torch.no_grad():
            return self.rpe.embeds(raw, patterns, isp)

    def negative_embeds(self, batch: int) -> torch.Tensor:
        """``(B, L, D)`` embeddings of the negative prompt (cached)."""
        with torch.no_grad():
            return self.encoder.encode([self.negative] * batch)


def build_prompts(cfg: RDDMTrainConfig, device: torch.device) -> Prompts:
    """RAW prompt extraction from the config: the SD folder's text encoder, ``prompt.extractor`` and, for an
    extractor that reads images, the DDNet of ``prompt.ddnet`` (:meth:`rddm.prompts.RawPromptExtractor.build`)."""
    from ..prompts import RawPromptExtractor

    pc = cfg.prompt
    rpe = RawPromptExtractor.build(cfg.model.sd_model, pc.extractor, pc.ddnet, device=device)
    if rpe.ddnet is not None:
        rpe.ddnet.requires_grad_(False)
    return Prompts(rpe, rpe.encoder, pc.negative)


def check_latent_scale(cfg: RDDMTrainConfig) -> None:
    """Refuse an RVAE folder whose latent scale was never calibrated (paper Eq. 4), unless the config accepts it.

    An RVAE from ``rddm train-rvae`` keeps SD's ``scaling_factor`` 0.18215 until ``rddm calibrate-latent-scale``
    writes its own (with ``latent_scale.json`` next to the weights); training on it silently mis-scales the
    UNet's input. ``model.rvae: null`` (SD's own VAE, for which 0.18215 is right) is not checked.
    """
    from pathlib import Path

    from .calibrate import REPORT

    m = cfg.model
    if m.rvae is None or m.accept_uncalibrated_scale:
        return
    root = Path(m.rvae)
    if not any((d / REPORT).is_file() for d in (root, root / "rvae")):
        raise ConfigError("the RVAE's latent scale was never calibrated (no latent_scale.json): SD's 0.18215 would "
                          "be used", path=root,
                          fix=f"run `rddm calibrate-latent-scale {root} --shards ...` first, or set "
                              "model.accept_uncalibrated_scale: true")


def _check_crop(cfg: RDDMTrainConfig, rddm) -> None:
    need, crop = rddm.size_multiple, cfg.data.crop
    if crop is not None and crop % need:
        raise ConfigError(f"data.crop {crop} is not a multiple of {need} (the RVAE's factor {rddm.latent_factor} x the "
                          "UNet's downsampling)", fix=f"use a crop that is a multiple of {need}, e.g. "
                                                   f"{max(need, crop // need * need)}")


class _LoRAFolder:
    """What :class:`~rddm.train.core.Run` saves, reloads and fingerprints for a model whose folder holds only its
    LoRA weights: ``save_pretrained`` of the model, ``load_checkpoint_weights`` copying the saved LoRA back into
    the same parameters (the optimizer keeps pointing at them), and ``state_dict`` for the rank digests."""

    def __init__(self, model, load, state_dict):
        self.model, self._load, self._state_dict = model, load, state_dict

    def save_pretrained(self, path) -> None:
        self.model.save_pretrained(path)

    def load_checkpoint_weights(self, path) -> None:
        self._load(path)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state_dict()


def _checkpointed(rddm, vsd) -> dict[str, _LoRAFolder]:
    """``rddm``: the whole restorer's weights are fingerprinted (the frozen base included: it must not move);
    ``vsd``: the update LoRA."""
    out = {"rddm": _LoRAFolder(rddm, rddm.load_lora_weights, rddm.state_dict)}
    if vsd is not None:
        params = [(f"unet.{i}", p) for i, p in enumerate(vsd.trainable_parameters())]
        out["vsd"] = _LoRAFolder(vsd, vsd.load_weights, lambda: {n: p.detach() for n, p in params})
    return out


# ------------------------------------------------------------------------------------------------- steps


def generator_step(rddm, vsd, rec_loss: DualDomainLoss, prompts: Prompts, cfg: RDDMTrainConfig, batch: dict,
                   device, step: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict, tuple]:
    """The generator's loss on one batch (Eq. 6).

    Returns:
        ``(loss, values to log, (ẑ0 detached, prompt embeddings))``: the latter feed the regulariser step.
    """
    lc = cfg.loss
    raw = batch["raw"].to(device, non_blocking=True)
    hq = batch["hq"].to(device, non_blocking=True)
    patterns = batch["pattern"]
    isp = isp_from_meta(batch["meta"], device=device)
    embeds = prompts.embeds(raw, patterns, isp)
    out = rddm(raw, patterns, embeds, generator=generator)
    rec = rec_loss(out.linear, hq, isp)
    loss = rec.total
    values = {k: v.detach() for k, v in rec.terms.items()}
    if vsd is not None and step >= lc.vsd_start:
        neg = prompts.negative_embeds(raw.shape[0])
        l_vsd = vsd.generator_loss(out.latent, embeds, neg, generator)
        loss = loss + lc.lambda_vsd * l_vsd
        values["vsd"] = l_vsd.detach()
    values["loss"] = loss.detach()
    return loss, values, (out.latent.detach(), embeds)


def regulariser_loss(vsd, cfg: RDDMTrainConfig, latent: torch.Tensor, embeds: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The update UNet's weighted ε-MSE diffusion loss on the generator's detached latents."""
    return cfg.loss.lambda_diffusion * vsd.diffusion_loss(latent.detach(), embeds, generator)


# ------------------------------------------------------------------------------------------------- loop


def _zero(*opts) -> None:
    for o in opts:
        if o is not None:
            o.zero_grad(set_to_none=True)


class Trainer:
    """The two players of Eq. 6 on a device, ready to step: the generator's CMB LoRA groups (``optim``) and, with
    VSD, the update UNet's LoRA (``reg_optim``), each with its AdamW, LR scheduler and gradient scaler.

    :meth:`step` is one optimizer step of both, the body of :func:`train_rddm`'s loop; the memory/speed script
    (``python -m rddm.scripts.memory --stage rddm``) runs the same method.

    Args:
        cfg: the resolved config.
        env: this process.
        rddm: the restorer (:func:`build_rddm`); moved to ``env.device`` in train mode, with gradient
            checkpointing if ``cfg`` asks for it.
        vsd: the regulariser (:func:`build_vsd`) or ``None``.
        rec_loss: :func:`build_rec_loss`, on ``env.device``.
        prompts: :func:`build_prompts` (or any object with ``embeds`` and ``negative_embeds``).
    """

    def __init__(self, cfg: RDDMTrainConfig, env: core.DistEnv, rddm: RDDM, vsd: VSDRegularizer | None,
                 rec_loss: DualDomainLoss,
                 prompts: Prompts):
        self.cfg, self.env, self.rddm, self.vsd, self.rec_loss, self.prompts = cfg, env, rddm, vsd, rec_loss, prompts
        if cfg.gradient_checkpointing:
            rddm.enable_gradient_checkpointing()  # replays each block with its own LoRA group (rddm.lora)
        rddm.to(env.device).train()
        self.params = rddm.trainable_parameters()
        self.opt = core.build_optimizer(self.params, cfg.optim)
        self.sched = core.build_scheduler(self.opt, cfg.optim, cfg.max_steps)
        self.scaler = core.make_scaler(env, cfg.mixed_precision)
        self.guard = NonFiniteGuard(env, cfg.max_nonfinite, "rddm train")
        self.reg_params: list[nn.Parameter] = []
        self.reg_opt = self.reg_sched = self.reg_scaler = None
        if vsd is not None:
            vsd.to(env.device).train()
            self.reg_params = vsd.trainable_parameters()
            self.reg_opt = core.build_optimizer(self.reg_params, cfg.reg_optim)
            self.reg_sched = core.build_scheduler(self.reg_opt, cfg.reg_optim, cfg.max_steps)
            self.reg_scaler = core.make_scaler(env, cfg.mixed_precision)

    def states(self) -> dict[str, object]:
        """Optimizers, schedulers, scalers and the non-finite guard by name (what
        :meth:`rddm.train.core.Run.save_checkpoint` saves)."""
        out: dict[str, object] = {"optimizer": self.opt, "scheduler": self.sched, "scaler": self.scaler,
                                  "guard": self.guard}
        if self.vsd is not None:
            out.update(reg_optimizer=self.reg_opt, reg_scheduler=self.reg_sched, reg_scaler=self.reg_scaler)
        return out

    def step(self, step: int, next_batch: Callable[[], dict]) -> dict:
        """Optimizer step ``step`` (counted from 0) of both players on ``grad_accum_steps`` batches of
        ``next_batch()``.

        1. *Generator*: :func:`generator_step` and backward per micro-batch; gradients averaged over the ranks;
           AdamW. 2. *Regulariser* (with VSD): :func:`regulariser_loss` on the generator's detached latents of the
           same micro-batches; averaged over the ranks; its own AdamW.

        Returns:
            The values to log (averaged over the micro-batches), then ``reg_lr``, ``lr``, ``grad_norm`` and
            ``nonfinite`` (1 when the non-finite guard skipped a player's update this step, :mod:`rddm.train.guard`).
        """
        cfg, env, accum = self.cfg, self.env, self.cfg.grad_accum_steps
        _zero(self.opt, self.reg_opt)
        sums: dict[str, torch.Tensor] = {}
        saved = []
        for micro in range(accum):
            batch = next_batch()
            gen = core.step_generator(cfg.seed, env.rank, step, micro, env.device)
            with core.autocast(env, cfg.mixed_precision):
                loss, values, keep = generator_step(self.rddm, self.vsd, self.rec_loss, self.prompts, cfg, batch,
                                                    env.device, step, gen)
            self.scaler.scale(loss / accum).backward()
            saved.append(keep)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v.float() / accum
        core.all_reduce_grads(self.params, env)
        norm, ok = guarded_step(self.opt, self.scaler, cfg.optim.max_grad_norm, sums["loss"], self.guard)
        self.generator_stepped = ok  # (the EMA follows the generator's steps)
        self.scaler.update()
        self.sched.step()
        _zero(self.opt, self.reg_opt)
        if self.vsd is not None:  # the update UNet, on the generator's latents of this step
            for micro, (latent, embeds) in enumerate(saved):
                gen = core.step_generator(cfg.seed, env.rank, step, micro, env.device, stream="reg")
                with core.autocast(env, cfg.mixed_precision):
                    d_loss = regulariser_loss(self.vsd, cfg, latent, embeds, gen)
                self.reg_scaler.scale(d_loss / accum).backward()
                sums["diffusion"] = sums.get("diffusion", 0.0) + d_loss.detach().float() / accum
            core.all_reduce_grads(self.reg_params, env)
            _, reg_ok = guarded_step(self.reg_opt, self.reg_scaler, cfg.reg_optim.max_grad_norm, sums["diffusion"],
                                     self.guard)
            ok = ok and reg_ok
            self.reg_scaler.update()
            self.reg_sched.step()
            _zero(self.opt, self.reg_opt)
            sums["reg_lr"] = self.reg_sched.get_last_lr()[0]
        sums["lr"] = self.sched.get_last_lr()[0]
        sums["grad_norm"] = norm
        sums["nonfinite"] = 0.0 if ok else 1.0
        return sums


def train_rddm(cfg: RDDMTrainConfig, out: str | os.PathLike, *, resume: str | None = None, device: str = "auto",
               progress: bool = True) -> dict:
    """Train RDDM's LoRA groups (Eq. 6); returns the summary also written to ``OUT/train_summary.json``.

    Arguments as for :func:`rddm.train.ddnet.train_ddnet`; ``cfg`` also needs ``model.sd_model``.
    """
    given = cfg
    with core.training_process(given, device) as (env, cfg):  # cfg: global_batch_size -> per-process batch, accum.
        recipe.check_terms_activate(cfg, {"loss.lambda_vsd (loss.vsd_start)": (
            cfg.loss.lambda_vsd if cfg.loss.vsd else 0.0, cfg.loss.vsd_start)})
        check_latent_scale(cfg)
        data = core.resolve_data(cfg.data)  # shards or on-the-fly sources: fails early, before any write
        rec_loss = build_rec_loss(cfg).to(env.device)
        rddm = build_rddm(cfg)  # fails early on a bad SD/RVAE folder, before anything is written
        _check_crop(cfg, rddm)
        vsd = build_vsd(cfg, rddm)
        prompts = build_prompts(cfg, env.device)
        validator = build_validator(cfg.validation, "train", env, out, lpips_folder=cfg.loss.lpips_weights,
                                    data=cfg.data)
        run = core.Run.start(out, given, env, resume)
        trainer = Trainer(cfg, env, rddm, vsd, rec_loss, prompts)
        states = trainer.states()
        ema = build_ema(cfg.ema, rddm.lora_named_parameters())
        if ema is not None:
            states["ema"] = ema
        models = _checkpointed(rddm, vsd)
        step, position = 0, None
        if run.resume_from is not None:
            step, position = run.load_checkpoint(models, states)
        stream = core.make_stream(data, cfg.batch_size, cfg.seed, position, env)
        log = core.TrainLogger(run, step, progress, desc="train")
        last = {}

        def predict(b):
            raw = b["raw"].to(env.device)
            isp = isp_from_meta(b["meta"], device=env.device)
            with core.autocast(env, cfg.mixed_precision):
                return rddm(raw, b["pattern"], prompts.embeds(raw, b["pattern"], isp)).linear.float()

        end = StepEnd(run, models, states, ema, validator, predict, [rddm], log, cfg.max_steps, cfg.save_every)
        try:
            while step < cfg.max_steps:
                sums = trainer.step(step, stream.next)
                step += 1
                skipped = sums["nonfinite"] > 0
                sums["nonfinite_skipped"] = trainer.guard.skipped + skipped
                last = log.log(step, sums, force=skipped) or last
                trainer.guard.end_step(step, skipped)
                end(step, trainer.generator_stepped, stream.position)
        finally:
            log.close()
        return end.finish(step, {"stage": "rddm", "loss_terms": cfg.loss.terms(), "last_logged": last,
                                 "batch_per_process": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps})
