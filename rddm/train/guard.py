"""The non-finite guard of every training stage: NaN/Inf steps are skipped and counted; ``max_nonfinite`` in a
row stop the run. See ``docs/training.md``."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from ..errors import TrainingDivergedError
from .distributed import DistEnv

__all__ = ["NonFiniteGuard", "guarded_step", "all_finite"]


def all_finite(*values) -> bool:
    """Whether every value (tensors, floats, ``None`` ignored) is finite."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, torch.Tensor):
            if not bool(torch.isfinite(v.detach()).all()):
                return False
        elif not math.isfinite(float(v)):
            return False
    return True


class NonFiniteGuard:
    """Counts skipped steps; raises after ``max_consecutive`` in a row.

    Attributes:
        skipped: steps skipped so far in the run (logged as ``nonfinite_skipped``; restored on resume).
        consecutive: the current run of skipped steps (restored on resume: a run of skips that a checkpoint
            and a resume interrupt still stops the run at ``max_consecutive``).
    """

    def __init__(self, env: DistEnv, max_consecutive: int, where: str = "training"):
        self.env, self.max_consecutive, self.where = env, int(max_consecutive), where
        self.skipped = self.consecutive = 0
        self.first_bad: int | None = None

    #: :meth:`rddm.train.checkpoint.Run.load_checkpoint` skips it when a checkpoint (an older one) lacks it
    checkpoint_optional = True

    def state_dict(self) -> dict:
        """The counts a checkpoint saves (in ``training_state.pt``, as ``"guard"``), so that a resumed run goes on
        counting: ``skipped``, ``consecutive`` and ``first_bad`` (the first step of the current run of skips)."""
        return {"skipped": self.skipped, "consecutive": self.consecutive, "first_bad": self.first_bad}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s counts."""
        self.skipped, self.consecutive = int(state["skipped"]), int(state["consecutive"])
        self.first_bad = None if state.get("first_bad") is None else int(state["first_bad"])

    def agree(self, ok: bool) -> bool:
        """``ok`` of every rank (a step is good only where all ranks saw finite values)."""
        if not self.env.distributed:
            return ok
        flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=self.env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def end_step(self, step: int, skipped: bool) -> None:
        """Record optimizer step ``step`` (1-based, as logged).

        Raises:
            TrainingDivergedError: the ``max_consecutive``-th skipped step in a row.
        """
        if not skipped:
            self.consecutive, self.first_bad = 0, None
            return
        self.skipped += 1
        self.consecutive += 1
        if self.first_bad is None:
            self.first_bad = step
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                f"{self.where}: {self.consecutive} steps in a row ({self.first_bad}..{step}) had a non-finite loss or "
                f"gradient norm; stopped at step {step} (no weight took a non-finite update; the checkpoints hold the "
                f"last finite weights)",
                fix="lower optim.lr (or raise optim.warmup_steps), set optim.max_grad_norm, or use bf16/no instead of "
                    "fp16; then --resume from the last checkpoint")


def guarded_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, max_grad_norm: float | None,
                 loss, guard: NonFiniteGuard) -> tuple[torch.Tensor, bool]:
    """Unscale, take the gradient norm, clip (if configured) and step, unless the loss or the norm is non-finite
    on any rank: then the step is skipped and the gradients dropped.

    With an enabled (fp16) gradient scaler, a non-finite gradient is the scaler's business (it skips the step and
    lowers its scale, the normal fp16 start-up); only a non-finite loss counts then. Call ``scaler.update()`` once
    after every optimizer of the step.

    Returns:
        ``(norm before clipping, stepped)``.
    """
    scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm is not None else math.inf)
    ok = all_finite(loss) and (scaler.is_enabled() or all_finite(norm))
    if not guard.agree(ok):
        optimizer.zero_grad(set_to_none=True)
        return norm, False
    scaler.step(optimizer)
    return norm, True
