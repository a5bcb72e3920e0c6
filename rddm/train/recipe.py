"""Start-up checks and derived settings of a training run: the per-process batch and accumulation of a
``global_batch_size``, loss terms that would never run, a missing latent scale. See ``docs/training.md``."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError

__all__ = ["resolve_batch", "effective_config", "check_terms_activate"]


def resolve_batch(global_batch_size: int, world_size: int, max_micro: int) -> tuple[int, int]:
    """Split ``global_batch_size`` samples per optimizer step over ``world_size`` processes.

    Each process takes ``global_batch_size / world_size`` samples per step, as ``accum`` micro-batches of ``micro``
    samples: ``micro`` is the largest divisor of that share that is ``<= max_micro`` (the config's
    ``batch_size``, what fits in memory), so ``micro × accum × world_size == global_batch_size`` exactly.

    Returns:
        ``(micro, accum)``.

    Raises:
        ConfigError: the world size does not divide the global batch (or exceeds it).
    """
    if world_size < 1 or max_micro < 1 or global_batch_size < 1:
        raise ConfigError(f"global_batch_size {global_batch_size}, world size {world_size} and batch_size {max_micro} "
                          "must all be >= 1")
    if global_batch_size % world_size:
        ok = [w for w in range(1, global_batch_size + 1) if global_batch_size % w == 0]
        raise ConfigError(f"global_batch_size {global_batch_size} does not split over {world_size} processes",
                          fix=f"run on {ok} processes, or set global_batch_size to a multiple of {world_size}")
    share = global_batch_size // world_size
    micro = max(d for d in range(1, min(share, max_micro) + 1) if share % d == 0)
    return micro, share // micro


def effective_config(cfg, world_size: int):
    """The config the training loop runs: with ``global_batch_size`` set, ``batch_size`` and ``grad_accum_steps``
    replaced by :func:`resolve_batch`'s per-process values (``global_batch_size`` then ``null``); else ``cfg``.

    The run folder keeps the config as given (resuming on another world size re-derives the split).
    """
    g = getattr(cfg, "global_batch_size", None)
    if g is None:
        return cfg
    micro, accum = resolve_batch(g, world_size, cfg.batch_size)
    return dataclasses.replace(cfg, batch_size=micro, grad_accum_steps=accum, global_batch_size=None)


def check_terms_activate(cfg, terms: dict[str, tuple[float, int]]) -> None:
    """Refuse a run in which a weighted loss term would never be computed.

    Args:
        cfg: the config (``max_steps`` is read).
        terms: config key → ``(weight, first step)``: a term with a weight ``> 0`` whose first step is
            ``>= max_steps`` is silently missing from the whole run.

    Raises:
        ConfigError: naming the term, its start and ``max_steps``, with both fixes.
    """
    for key, (weight, start) in terms.items():
        if weight > 0 and start >= cfg.max_steps:
            raise ConfigError(f"{key} has weight {weight} but starts at step {start}, and the run ends at max_steps "
                              f"{cfg.max_steps}: the term would never be computed",
                              fix=f"lower the start below {cfg.max_steps}, raise max_steps, or set its weight to 0")
