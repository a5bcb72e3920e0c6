"""An exponential moving average (EMA) of the trained weights, for validation and the final model folder.

The average follows ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(decay)`` (tested against
it): the first update copies the weights, every later one is ``ema ← ema + (1 − decay)·(w − ema)`` (``lerp``).
Parameters only (the stages' networks keep no running statistics). Updates come after each optimizer step the
non-finite guard let through (:mod:`rddm.train.guard`); before ``start + 1`` steps the average is the weights
themselves.

Every rank keeps its own average of its (bitwise identical) weights, so the averages agree too; rank 0 saves it in
each checkpoint's ``training_state.pt`` (key ``ema``: ``shadow`` tensors by parameter name, ``n_averaged``), from
which a resumed run restores it bit for bit. :meth:`EMA.applied` swaps the average into the model for a block
(validation, the final ``save_pretrained``) and puts the trained weights back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ..errors import CheckpointError
from .val_config import EmaConfig

__all__ = ["EMA", "build_ema", "ema_applied"]


class EMA:
    """The EMA of ``params``.

    Args:
        params: ``(name, parameter)`` pairs of the trained weights (names key the saved state).
        decay: the EMA decay in ``(0, 1)``.
        start: optimizer steps before averaging begins (:class:`~rddm.train.val_config.EmaConfig`).

    Attributes:
        shadow: the averages, float tensors like the parameters (same dtype and device).
        n_averaged: updates since averaging began (0: the average is the current weights).
    """

    def __init__(self, params: Iterable[tuple[str, nn.Parameter]], decay: float, start: int = 0):
        self.names, self.params = [], []
        for name, p in params:
            self.names.append(name)
            self.params.append(p)
        if len(set(self.names)) != len(self.names):
            raise ValueError("EMA: parameter names must be unique")
        self.decay, self.start = float(decay), int(start)
        self.shadow = [p.detach().clone() for p in self.params]
        self.n_averaged = 0

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the weights after optimizer step ``step`` (1-based) into the average."""
        if step <= self.start or self.n_averaged == 0:
            for s, p in zip(self.shadow, self.params):
                s.copy_(p.detach())
            if step > self.start:
                self.n_averaged = 1
            return
        weight = 1.0 - self.decay
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), weight)
        self.n_averaged += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the parameters hold the average (when averaging has begun); afterwards the trained
        weights again, bitwise."""
        if self.n_averaged == 0:  # nothing averaged yet: the average is the weights
            yield
            return
        with torch.no_grad():
            kept = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, k in zip(self.params, kept):
                    p.copy_(k)

    def state_dict(self) -> dict:
        """What a checkpoint keeps (``training_state.pt``, key ``ema``): CPU copies of the averages."""
        return {"decay": self.decay, "start": self.start, "n_averaged": self.n_averaged,
                "shadow": {n: s.detach().cpu().clone() for n, s in zip(self.names, self.shadow)}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (bitwise).

        Raises:
            CheckpointError: the saved average is of other parameters (names or shapes differ).
        """
        saved = state["shadow"]
        if sorted(saved) != sorted(self.names):
            missing = sorted(set(self.names) - set(saved))[:3]
            raise CheckpointError(f"the checkpoint's EMA holds other parameters (missing {missing}, {len(saved)} "
                                  f"saved vs {len(self.names)} expected)",
                                  fix="resume with the config the run was started with (ema, model)")
        for n, s in zip(self.names, self.shadow):
            if saved[n].shape != s.shape:
                raise CheckpointError(f"the checkpoint's EMA of {n} has shape {tuple(saved[n].shape)}, the model's "
                                      f"{tuple(s.shape)}", fix="resume with the config the run was started with")
        with torch.no_grad():
            for n, s in zip(self.names, self.shadow):
                s.copy_(saved[n])
        self.n_averaged = int(state["n_averaged"])


def build_ema(cfg: EmaConfig | None, params: Iterable[tuple[str, nn.Parameter]]) -> EMA | None:
    """The EMA of the trainable ones of ``params`` for ``cfg`` (``None`` when ``cfg`` is ``None``)."""
    if cfg is None:
        return None
    return EMA([(n, p) for n, p in params if p.requires_grad], cfg.decay, cfg.start)


@contextlib.contextmanager
def ema_applied(ema: EMA | None) -> Iterator[None]:
    """:meth:`EMA.applied`, or nothing when ``ema`` is ``None``."""
    if ema is None:
        yield
    else:
        with ema.applied():
            yield
