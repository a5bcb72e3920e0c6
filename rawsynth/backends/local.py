"""The local backend: shard jobs in this process (one worker) or in a pool of spawned processes."""

from __future__ import annotations

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


class LocalBackend(ShardBackend):
    """Shard jobs on this machine.

    Args:
        workers: processes. ``1`` (or a single task) runs the jobs in this process, with per-sample progress;
            more runs a ``ProcessPoolExecutor`` (``spawn`` context), one shard per task.
    """

    kind = BackendKind.LOCAL

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
                                 initializer=worker_init) as pool:
            pending = {pool.submit(job, t): t for t in tasks}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        t = pending.pop(fut)
                        stats = fut.result()
                        progress(len(t.refs))
                        yield t, stats
            finally:
                for fut in pending:  # an error or an interruption: start nothing new
                    fut.cancel()
