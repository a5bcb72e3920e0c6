"""What every training stage does after an optimizer step (the EMA update, validation and the checkpoint when
due) and at the end (the final save, with the EMA weights when averaging). See ``docs/training.md``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import Run
from .ema import EMA, ema_applied
from .logger import TrainLogger
from .validation import Validator


@dataclass
class StepEnd:
    """The end of a stage's optimizer step, shared by ``train_ddnet``, ``train_rvae`` and ``train_rddm``.

    Args:
        run: the run folder (checkpoints).
        models: the modules a checkpoint holds, by name.
        states: optimizers, schedulers, scalers, the guard (and the EMA) by name.
        ema: the EMA of the trainable weights, or ``None``.
        validator: the stage's validator, or ``None``.
        predict: ``predict(batch) -> (B, 3, H, W)`` float output of the stage on a validation batch.
        nets: the modules put in eval mode while validating.
        log: the run's logger (validation records).
        max_steps, save_every: the config's.
    """

    run: Run
    models: dict[str, nn.Module]
    states: dict[str, object]
    ema: EMA | None
    validator: Validator | None
    predict: Callable[[dict], torch.Tensor]
    nets: Sequence[nn.Module]
    log: TrainLogger
    max_steps: int
    save_every: int
    last_validation: dict | None = None

    def __call__(self, step: int, stepped: bool, position) -> None:
        """After optimizer step ``step``: average the weights if the step updated them (``stepped``: not skipped
        by the non-finite guard), validate (with the averaged weights) and save a checkpoint (at data
        ``position``) when due."""
        if self.ema is not None and stepped:
            self.ema.update(step)
        if self.validator is not None and self.validator.due(step, self.max_steps):
            with ema_applied(self.ema):
                self.last_validation = self.validator.run(step, self.predict, self.nets, self.log)
        if step % self.save_every == 0 or step == self.max_steps:
            self.run.save_checkpoint(step, self.models, self.states, position)

    def finish(self, step: int, extra: dict) -> Path:
        """The final save (:meth:`Run.finish`) of ``models``, with the EMA weights when averaging; ``extra`` (the
        stage's summary entries) gains ``last_validation`` and ``final_weights`` (``ema`` or ``trained``)."""
        extra = {**extra, "last_validation": self.last_validation or {},
                 "final_weights": "ema" if self.ema is not None else "trained"}
        with ema_applied(self.ema):
            return self.run.finish(step, self.models, extra)
