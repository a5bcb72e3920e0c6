"""``rddm train-ddnet``: train DDNet with L2 on ``ddnet``-mode shards (paper §3.1). See ``docs/training.md``."""

from __future__ import annotations

import os

import torch.nn.functional as F

from ..config import DDNetTrainConfig, config_to_dict
from . import core
from .ema import build_ema
from .guard import NonFiniteGuard, guarded_step
from .step_end import StepEnd
from .validation import build_validator

__all__ = ["train_ddnet", "ddnet_loss"]


def ddnet_loss(model, batch: dict, device) -> tuple:
    """The L2 loss of one batch: ``(loss, prediction)`` (the prediction in float32)."""
    raw = batch["raw"].to(device, non_blocking=True)
    hq = batch["hq"].to(device, non_blocking=True)
    pred = model(raw, batch["pattern"]).float()
    return F.mse_loss(pred, hq), pred


def build_ddnet(cfg: DDNetTrainConfig):
    """A new DDNet from ``cfg.model`` (seeded), or the one in ``cfg.init``."""
    from ..models.ddnet import DDNet

    if cfg.init is not None:
        return DDNet.from_pretrained(cfg.init)
    with core.seeded(cfg.seed):
        return DDNet(**config_to_dict(cfg.model))


def train_ddnet(cfg: DDNetTrainConfig, out: str | os.PathLike, *, resume: str | None = None, device: str = "auto",
                progress: bool = True) -> dict:
    """Train DDNet; returns the summary also written to ``OUT/train_summary.json``.

    Args:
        cfg: the resolved config (``data.shards`` or ``data.onthefly`` must be set).
        out: output folder.
        resume: ``None``, ``"latest"`` or a checkpoint folder (:meth:`rddm.train.core.Run.start`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        progress: show a progress bar (rank 0).
    """
    given = cfg
    with core.training_process(given, device) as (env, cfg):  # cfg: global_batch_size -> per-process batch, accum.
        data = core.resolve_data(cfg.data)  # shards or on-the-fly sources: fails early, before any write
        model = build_ddnet(cfg)  # fails early on a bad init folder, before anything is written
        validator = build_validator(cfg.validation, "train-ddnet", env, out, data=cfg.data)  # (fails early too)
        run = core.Run.start(out, given, env, resume)
        if cfg.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.to(env.device).train()
        opt = core.build_optimizer(model.parameters(), cfg.optim)
        sched = core.build_scheduler(opt, cfg.optim, cfg.max_steps)
        scaler = core.make_scaler(env, cfg.mixed_precision)
        guard = NonFiniteGuard(env, cfg.max_nonfinite, "rddm train-ddnet")
        states = {"optimizer": opt, "scheduler": sched, "scaler": scaler, "guard": guard}
        ema = build_ema(cfg.ema, model.named_parameters())
        if ema is not None:
            states["ema"] = ema
        step, position = 0, None
        if run.resume_from is not None:
            step, position = run.load_checkpoint({"ddnet": model}, states)
        net = core.wrap_ddp(model, env)
        stream = core.make_stream(data, cfg.batch_size, cfg.seed, position, env)
        log = core.TrainLogger(run, step, progress, desc="train-ddnet")
        last = {}

        def predict(b):
            with core.autocast(env, cfg.mixed_precision):
                return model(b["raw"].to(env.device), b["pattern"]).float()

        end = StepEnd(run, {"ddnet": model}, states, ema, validator, predict, [model], log, cfg.max_steps,
                      cfg.save_every)
        try:
            while step < cfg.max_steps:
                total = 0.0
                for micro in range(cfg.grad_accum_steps):
                    batch = stream.next()
                    with core.no_sync(net, micro < cfg.grad_accum_steps - 1):
                        with core.autocast(env, cfg.mixed_precision):
                            loss, _ = ddnet_loss(net, batch, env.device)
                        scaler.scale(loss / cfg.grad_accum_steps).backward()
                    total += loss.detach() / cfg.grad_accum_steps
                norm, ok = guarded_step(opt, scaler, cfg.optim.max_grad_norm, total, guard)
                scaler.update()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                values = {"loss": total, "lr": sched.get_last_lr()[0], "grad_norm": norm,
                          "nonfinite": float(not ok), "nonfinite_skipped": guard.skipped + (not ok)}
                last = log.log(step, values, force=not ok) or last
                guard.end_step(step, not ok)
                end(step, ok, stream.position)
        finally:
            log.close()
        return end.finish(step, {"stage": "ddnet", "last_logged": last})
