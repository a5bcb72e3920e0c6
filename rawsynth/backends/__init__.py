"""Where ``rawsynth generate`` runs its shard tasks (this machine or a Dask cluster); every backend runs the same
:class:`rawsynth.generate.ShardJob`, so the bytes never depend on it. See ``docs/scale.md``."""

from __future__ import annotations

from ..errors import ConfigError
from .base import BackendKind, ShardBackend, ShardJobLike, ShardLike, WorkerLostError
from .dask import DaskBackend
from .local import LocalBackend

__all__ = ["BackendKind", "ShardBackend", "ShardJobLike", "ShardLike", "WorkerLostError", "LocalBackend",
           "DaskBackend", "make_backend"]


def make_backend(backend: str | BackendKind | ShardBackend = "local", *, workers: int = 1,
                 scheduler: str | None = None, retries: int = 2, scheduler_timeout: float = 30.0) -> ShardBackend:
    """The backend for ``rawsynth generate --backend ... [--scheduler ADDR]``.

    Args:
        backend: ``"local"``, ``"dask"``, a :class:`BackendKind`, or a ready :class:`ShardBackend` (returned
            as is; ``scheduler`` must then be ``None``, the other arguments are ignored).
        workers: local processes, or the worker processes of the ``LocalCluster`` started by ``dask`` without
            a scheduler.
        scheduler: a Dask scheduler address (``tcp://HOST:8786``); only with ``dask``.
        retries: ``dask``: resubmissions of a task that raised.
        scheduler_timeout: ``dask``: seconds to try to connect to ``scheduler``.

    Raises:
        ConfigError: an unknown backend, ``scheduler`` without ``dask``, or invalid values.
    """

    if isinstance(backend, ShardBackend):
        if scheduler is not None:
            raise ConfigError("scheduler is given with a ready backend object; configure the backend instead")
        return backend
    try:
        kind = BackendKind(backend)
    except ValueError:
        raise ConfigError(f"unknown backend {backend!r}; choose one of "
                          f"{[k.value for k in BackendKind]}") from None
    if kind is BackendKind.LOCAL:
        if scheduler is not None:
            raise ConfigError(f"--scheduler {scheduler} needs --backend dask (the local backend runs on this "
                              "machine); add --backend dask, or drop --scheduler")
        return LocalBackend(workers)
    elif kind is BackendKind.DASK:
        return DaskBackend(scheduler, workers, retries=retries, connect_timeout=scheduler_timeout)
    else:
        raise ConfigError(f"backend {kind.value!r} is not implemented")
