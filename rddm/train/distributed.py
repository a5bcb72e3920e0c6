"""Processes of a training run: one per device (``torchrun``/``accelerate launch``), DDP and gradient sync.
See ``docs/training.md``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from rawsynth.device import check_device, resolve_device

from ..errors import ConfigError
from .recipe import effective_config

if TYPE_CHECKING:
    from ..config import TrainConfig


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an int") from None


def setup_distributed(device: str = "auto") -> DistEnv:
    """Join the process group started by ``torchrun``/``accelerate launch`` (if any) and pick the device.

    Args:
        device: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``), ``cpu``, ``cuda`` or
            ``cuda:N`` (single process only).

    Raises:
        ConfigError: CUDA requested but not available, or ``cuda:N`` with several processes.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world > 1 and check_device(device).startswith("cuda:"):
        raise ConfigError(f"--device {device} with {world} processes: each process takes cuda:LOCAL_RANK",
                          fix="use --device cuda")
    dev = resolve_device(device, local_rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        here = True
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistEnv(rank, world, local, dev, here)


def cleanup_distributed(env: DistEnv) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if env.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def training_process(cfg: TrainConfig, device: str = "auto") -> Iterator[tuple[DistEnv, TrainConfig]]:
    """Every training stage's prologue and epilogue: join the process group (:func:`setup_distributed`), derive
    the config the loop runs on this world size (:func:`rddm.train.recipe.effective_config`), and leave the group
    at the end (:func:`cleanup_distributed`), whatever happens.

    Yields:
        ``(env, effective_cfg)``: the :class:`DistEnv` and the config with the per-process batch and accumulation.
    """
    env = setup_distributed(device)
    try:
        yield env, effective_config(cfg, env.world_size)
    finally:
        cleanup_distributed(env)


def _all_gather(env: DistEnv, obj) -> list:
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def _broadcast(env: DistEnv, obj):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_then_broadcast(env: DistEnv, fn: Callable[[], object], what: str) -> None:
    """Run ``fn`` on rank 0 only, then make its outcome every rank's (a collective; ends like a barrier).

    A :class:`~rawsynth.errors.RawsynthError` (e.g. a refused or failed checkpoint save) is raised again on every
    rank with the same type, message, path and fix; any other exception on rank 0 is raised there and as a
    :class:`~rddm.errors.CheckpointError` naming it on the others. So no rank is left waiting at a barrier for a
    rank 0 that has failed.

    Args:
        env: this process.
        fn: what rank 0 does (its return value is ignored).
        what: what ``fn`` does, for the other ranks' message (``"saving checkpoint step-000010"``).
    """
    from rawsynth.errors import RawsynthError

    from ..errors import CheckpointError

    error: BaseException | None = None
    outcome = None
    if env.is_main:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every rank gets the outcome, rank 0 raises it below
            error = e
            if isinstance(e, RawsynthError):
                outcome = (type(e), e.message, None if e.path is None else str(e.path), e.fix)
            else:
                outcome = (CheckpointError, f"rank 0 failed while {what} ({type(e).__name__}: {e})", None,
                           "see rank 0's error above")
    if env.distributed:
        outcome = _broadcast(env, outcome)
    if error is not None:
        raise error
    if outcome is not None:
        cls, message, path, fix = outcome
        try:
            error = cls(message, path=path, fix=fix)
        except TypeError:  # an error type with another constructor: the same words as a CheckpointError
            error = CheckpointError(message, path=path, fix=fix)
        raise error


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel(model)`` when several processes run, else ``model``."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def no_sync(model: nn.Module, skip: bool):
    """``model.no_sync()`` (no gradient all-reduce) when ``skip`` and ``model`` is DDP-wrapped."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def all_reduce_grads(params: Sequence[nn.Parameter], env: DistEnv) -> None:
    """Average the gradients of ``params`` over the ranks (what DDP does), for models that DDP cannot wrap.

    Used where each step runs a different subset of the parameters (a CMB LoRA group per Bayer pattern, two
    networks stepping in turn): a parameter that got no gradient on any rank keeps ``grad = None`` everywhere
    (its optimizer skips it, as in a single process); one that got a gradient on some ranks gets the sum over
    the ranks divided by the world size on every rank (zeros for the others), exactly DDP's average. One
    flattened all-reduce per call; a no-op in a single process.
    """
    if not env.distributed:
        return
    params = list(params)
    if not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=env.device)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist()) if h]
    if not live:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in live]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= env.world_size
    offset = 0
    for p in live:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n
