"""The local backend: shard jobs in this process (one worker) or in a pool of spawned processes.
See ``docs/scale.md``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..errors import ConfigError
from .base import BackendKind, ShardBackend, ShardJobLike, ShardLike

__all__ = ["LocalBackend", "worker_init"]


def worker_init() -> None:
    """One torch and one OpenCV thread per worker process: workers are processes, one per core."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


_in_job = False


def _on_sigterm(signum, frame):
    from ..signals import Terminated

    if _in_job:
        raise Terminated()  # unwinds through the shard writer, which removes its temporary file
    os._exit(128 + signum)


def _pool_worker_init(parent_pid: int) -> None:
    """A pool worker: dies with its parent (SIGTERM, however the parent ended) and on SIGTERM removes the
    temporary file of the shard it is writing before exiting."""
    from ..signals import die_with_parent

    signal.signal(signal.SIGTERM, _on_sigterm)
    die_with_parent(parent_pid)
    worker_init()


def _run_job(job: ShardJobLike, task: ShardLike) -> dict:
    global _in_job
    from ..signals import Terminated

    _in_job = True
    try:
        return job(task)
    except Terminated:
        os._exit(128 + signal.SIGTERM)  # cleaned up on the way here; the pool is going away
    finally:
        _in_job = False


def _stop_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """Terminate the pool's worker processes (each removes its temporary file) and wait for them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join(timeout)


class LocalBackend(ShardBackend):
    """Shard jobs on this machine.

    Args:
        workers: processes. ``1`` (or a single task) runs the jobs in this process, with per-sample progress;
            more runs a ``ProcessPoolExecutor`` (``spawn`` context), one shard per task. Its workers die with
            this process (:func:`rawsynth.signals.die_with_parent`), also when it is SIGKILLed; on an error or
            an interruption here they are terminated (each removes the temporary file of its shard) before
            :meth:`run` returns.
    """

    kind = BackendKind.LOCAL
    owns_workers = True

    def __init__(self, workers: int = 1):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an int >= 1, got {workers!r}")
        self.workers = workers

    def describe(self) -> str:
        return f"local, {self.workers} process{'es' if self.workers > 1 else ''}"

    def run(self, job: ShardJobLike, tasks: Sequence[ShardLike],
            progress: Callable[[int], None]) -> Iterator[tuple[ShardLike, dict]]:
        if self.workers == 1 or len(tasks) <= 1:
            worker_init()
            for t in tasks:
                yield t, job(t, on_sample=lambda: progress(1))
            return
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), mp_context=mp.get_context("spawn"),
                                 initializer=_pool_worker_init, initargs=(os.getpid(),)) as pool:
            pending = {pool.submit(_run_job, job, t): t for t in tasks}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        t = pending.pop(fut)
                        stats = fut.result()
                        progress(len(t.refs))
                        yield t, stats
            finally:
                if pending:  # an error or an interruption (also SIGTERM): start nothing new, stop what runs
                    _stop_workers(pool)
