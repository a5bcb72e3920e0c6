"""The backend interface: run shard jobs somewhere and hand their stats back to the client as they finish.
See ``docs/scale.md``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any, ClassVar, Protocol

from ..errors import RawsynthError

__all__ = ["BackendKind", "ShardBackend", "ShardLike", "ShardJobLike", "WorkerLostError"]


class BackendKind(str, Enum):
    """Where ``rawsynth generate`` runs its shard tasks.

    ``LOCAL``: this process, or a pool of processes on this machine (``--workers``). ``DASK``: the workers of a
    ``dask.distributed`` cluster, an existing one (``--scheduler ADDR``) or a ``LocalCluster`` started for the
    run.
    """

    LOCAL = "local"
    DASK = "dask"


class ShardLike(Protocol):
    """What a backend needs to know of a task: its shard name (a stable task key) and its sample count."""

    name: str
    refs: Sequence[Any]


class ShardJobLike(Protocol):
    """The picklable unit of work (:class:`rawsynth.generate.ShardJob`): make one shard, return its stats.

    It must be idempotent: run again on a shard that is already complete, it returns the recorded stats
    without rewriting anything; run again on an unfinished one, it rewrites it with the same bytes.
    """

    def __call__(self, task: Any, on_sample: Callable[[], None] | None = None) -> dict: ...


class WorkerLostError(RawsynthError, RuntimeError):
    """A shard task could not finish because the workers running it kept dying (out of memory, pre-empted
    nodes, a crashing library). Finished shards are kept; fix the cause and rerun with ``--resume``."""


class ShardBackend(ABC):
    """Runs shard jobs; used as a context manager by :func:`rawsynth.generate.generate`.

    The order of calls is: :meth:`open` (connect or start workers; a backend that cannot work raises a typed
    error here, before the output folder is touched), :meth:`check` (once the output folder exists: can the
    workers see it), :meth:`run`, :meth:`close`. The client alone writes ``manifest.json``; jobs write only
    their own shard and stats files.
    """

    kind: ClassVar[BackendKind]
    #: Whether :meth:`close` stops every worker that may still write into the output folder (a local pool, a
    #: ``LocalCluster`` started for the run), so that the client may then remove their temporary files.
    owns_workers: bool = False

    def __enter__(self) -> ShardBackend:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Connect to or start the workers. Raises a typed error (naming the fix) if that fails."""
        return None

    def check(self, out_dir: str, probe_file: str, source_path: str | None) -> None:
        """Check that the workers can run jobs: ``out_dir`` (absolute) is writable and holds ``probe_file`` (a
        file the client has just written there, proving a shared filesystem), ``source_path`` is readable."""
        return None

    @abstractmethod
    def run(self, job: ShardJobLike, tasks: Sequence[ShardLike],
            progress: Callable[[int], None]) -> Iterator[tuple[ShardLike, dict]]:
        """Run ``job(task)`` for every task; yield ``(task, stats)`` in completion order.

        ``progress(n)`` is called (on the client) as ``n`` more samples are done. If a task fails, tasks not
        yet started are cancelled and the task's exception is raised; already finished shards stay on disk.
        """

    def close(self) -> None:
        """Release the workers (a cluster the backend started is shut down; an external one is left running).
        May be called more than once."""
        return None

    def describe(self) -> str:
        """A short human description (``"local, 4 processes"``, ``"dask tcp://10.0.0.1:8786, 64 workers"``)."""
        return self.kind.value
