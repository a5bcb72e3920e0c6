"""Randomness, precision and optimisation of a training step: seeded init, per-step generators, autocast,
GradScaler, AdamW and its schedule. See ``docs/training.md``."""

from __future__ import annotations

import contextlib

import torch

from rawsynth.rng import torch_generator

from ..config import OptimConfig
from ..errors import ConfigError
from .distributed import DistEnv


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with the global torch RNG seeded from ``seed`` (e.g. model initialisation), restoring the
    previous RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def step_generator(seed: int, rank: int, step: int, micro: int, device: torch.device,
                   stream: str = "micro") -> torch.Generator:
    """The generator of one micro-batch's random draws: a function of ``(seed, rank, step, micro, stream)`` only.

    ``stream`` names independent draws of the same micro-batch (e.g. ``"reg"`` for a second network's step); the
    default ``"micro"`` is the stream every stage uses for its model's own draws.
    """
    return torch_generator(seed, f"rank{rank}", f"step{step}/{stream}{micro}", device=device)


def autocast(env: DistEnv, mixed_precision: str):
    """``torch.autocast`` for ``bf16``/``fp16`` on the run's device; a no-op context for ``no``."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    if mixed_precision == "bf16":
        if env.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("mixed_precision bf16: this GPU does not support bfloat16", fix="use fp16 or no")
        return torch.autocast(env.device.type, dtype=torch.bfloat16)
    if mixed_precision == "fp16":
        return torch.autocast(env.device.type, dtype=torch.float16)
    raise ConfigError(f"mixed_precision must be no, bf16 or fp16, got {mixed_precision!r}")


def make_scaler(env: DistEnv, mixed_precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for ``fp16`` only."""
    return torch.amp.GradScaler(env.device.type, enabled=mixed_precision == "fp16")


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the parameters that require grad."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: no parameter requires grad")
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
    """The learning-rate schedule (``diffusers.optimization.get_scheduler``), stepped once per optimizer step."""
    from diffusers.optimization import get_scheduler

    kwargs = {}
    if cfg.lr_scheduler != "constant":
        kwargs["num_warmup_steps"] = cfg.warmup_steps
    if cfg.lr_scheduler in ("linear", "cosine"):
        kwargs["num_training_steps"] = max(max_steps, 1)
    return get_scheduler(cfg.lr_scheduler, optimizer, **kwargs)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, max_grad_norm: float | None):
    """Unscale, clip (if configured) and step; returns the gradient norm before clipping (or ``None``).
    Call ``scaler.update()`` once after every optimizer of the step."""
    norm = None
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(optimizer)
    return norm
