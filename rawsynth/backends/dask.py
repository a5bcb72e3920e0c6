"""The Dask backend: shard jobs on the workers of a ``dask.distributed`` cluster, retried where a worker dies, a
bounded number in flight. See ``docs/scale.md``."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from .._version import __version__
from ..errors import ConfigError
from .base import BackendKind, ShardBackend, ShardJobLike, ShardLike, WorkerLostError

if TYPE_CHECKING:
    import distributed

__all__ = ["DaskBackend", "probe_worker"]

_INSTALL_HINT = "pip install 'rawsynth-rddm[dist]' (or 'dask[distributed]')"


def _versions() -> dict[str, str]:
    """Versions of what a shard's bytes depend on."""
    import cv2
    import numpy
    import torch

    return {"rawsynth": __version__, "numpy": numpy.__version__, "torch": torch.__version__.split("+")[0],
            "opencv": cv2.__version__}


def probe_worker(out_dir: str, probe_file: str, source_path: str | None) -> dict:
    """Run on every worker before the first task: what stops this worker from writing correct shards.

    Returns:
        ``{"problems": [str, ...], "versions": {package: version}}``.
    """
    problems = []
    if not os.path.isdir(out_dir):
        problems.append(f"cannot see the output folder {out_dir}; workers need it on a shared filesystem, "
                        "mounted at the same path")
    elif not os.access(out_dir, os.W_OK | os.X_OK):
        problems.append(f"cannot write to the output folder {out_dir}; fix its permissions for the workers' user")
    elif not os.path.exists(os.path.join(out_dir, probe_file)):
        problems.append(f"its {out_dir} is not the client's folder (a file the client wrote there is missing); "
                        "mount the same shared filesystem at the same path on every node")
    if source_path is not None and not os.access(source_path, os.R_OK):
        problems.append(f"cannot read the source {source_path}; sources must be readable at the same path on "
                        "every node")
    return {"problems": problems, "versions": _versions()}


class DaskBackend(ShardBackend):
    """Shard jobs on a ``dask.distributed`` cluster.

    Args:
        scheduler: the scheduler's address (``tcp://HOST:8786``, as printed by ``dask scheduler``). ``None``
            starts a ``LocalCluster`` of ``workers`` processes with one thread each, shut down at the end.
        workers: worker processes of the ``LocalCluster`` (ignored with ``scheduler`` or ``client``).
        client: an existing ``distributed.Client`` to use instead (left open at the end).
        retries: times a task that raises (e.g. a flaky network filesystem) is resubmitted before the run
            stops. Worker deaths are not counted here: see ``distributed.scheduler.allowed-failures``.
        connect_timeout: seconds to wait for the scheduler.
        worker_timeout: seconds to wait for at least one worker to join the scheduler.
        max_in_flight: tasks submitted at a time (``None``: twice the cluster's threads, re-read as tasks finish).

    Raises:
        ConfigError: invalid arguments.
    """

    kind = BackendKind.DASK

    def __init__(self, scheduler: str | None = None, workers: int = 1, *, client: distributed.Client | None = None,
                 retries: int = 2, connect_timeout: float = 30.0, worker_timeout: float = 300.0,
                 max_in_flight: int | None = None):
        for name, v, low in (("workers", workers, 1), ("retries", retries, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {v!r}")
        if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
            raise ConfigError(f"max_in_flight must be an int >= 1 or None, got {max_in_flight!r}")
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise ConfigError(f"scheduler must be an address like tcp://HOST:8786, got {scheduler!r}")
        self.scheduler = scheduler.strip() if scheduler else None
        self.workers, self.retries, self.max_in_flight = workers, retries, max_in_flight
        self.connect_timeout, self.worker_timeout = float(connect_timeout), float(worker_timeout)
        self.client = client
        self._own_client = client is None
        self.cluster = None

    # ------------------------------------------------------------------------------------------- lifecycle

    def _where(self) -> str:
        if self.scheduler:
            return f"the Dask scheduler at {self.scheduler}"
        if self.client is not None and not self._own_client:
            return f"the Dask scheduler at {self.client.scheduler.address}"
        return "the local Dask cluster"

    def open(self) -> None:
        try:
            import distributed
        except ImportError:
            raise ConfigError(f"--backend dask needs dask.distributed, which is not installed; {_INSTALL_HINT}"
                              ) from None
        if self.client is None:
            if self.scheduler:
                try:  # a malformed address makes Client hang for a minute on exit: check it first
                    distributed.comm.resolve_address(self.scheduler)
                except (ValueError, OSError) as e:
                    raise ConfigError(f"--scheduler {self.scheduler} is not a usable address ({e}); give it as "
                                      "`dask scheduler` prints it, e.g. tcp://10.0.0.1:8786") from None
                try:
                    self.client = distributed.Client(self.scheduler, timeout=self.connect_timeout,
                                                     set_as_default=False)
                except (OSError, TimeoutError, ValueError, TypeError) as e:
                    raise ConfigError(
                        f"cannot reach the Dask scheduler at {self.scheduler} ({type(e).__name__}: {e}); check the "
                        "address (`dask scheduler` prints it as 'Scheduler at: tcp://HOST:PORT'), that the "
                        "scheduler is running and that its port is open from this machine, or drop --scheduler "
                        "to start a local cluster") from None
            else:
                try:
                    self.cluster = distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                                            processes=True, dashboard_address=":0")
                except Exception as e:  # noqa: BLE001 - distributed raises RuntimeError for any start failure
                    raise ConfigError(f"cannot start a local Dask cluster of {self.workers} worker processes "
                                      f"({type(e).__name__}: {e}; the workers' own errors are printed above); fix "
                                      "that, or run with --backend local") from None
                self.client = distributed.Client(self.cluster, set_as_default=False)
                self.owns_workers = True
        try:
            self.client.wait_for_workers(1, timeout=self.worker_timeout)
        except (TimeoutError, OSError):
            where = self._where()
            self.close()
            raise ConfigError(f"{where} has no workers after {self.worker_timeout:g} s; start some with "
                              f"`dask worker {self.scheduler or 'ADDRESS'} --nthreads 1` (see docs/scale.md)") from None

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def describe(self) -> str:
        n = len(self.client.nthreads()) if self.client is not None else 0
        return f"dask, {self._where()}, {n} workers"

    # ----------------------------------------------------------------------------------------------- work

    def check(self, out_dir: str, probe_file: str, source_path: str | None) -> None:
        try:
            reports = self.client.run(probe_worker, out_dir, probe_file, source_path)
        except Exception as e:  # noqa: BLE001 - anything here means the workers cannot run rawsynth
            raise ConfigError(f"the workers of {self._where()} cannot run rawsynth ({type(e).__name__}: {e}); "
                              f"install this package (version {__version__}) in the workers' Python environment "
                              "(see docs/scale.md)") from None
        problems = [f"worker {w}: {p}" for w, r in sorted(reports.items()) for p in r["problems"]]
        problems += [f"worker {w}: runs rawsynth {r['versions']['rawsynth']}, this client {__version__} (the "
                     "manifest records one version); install the same version everywhere"
                     for w, r in sorted(reports.items()) if r["versions"]["rawsynth"] != __version__]
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ConfigError("; ".join(problems[:3]) + more)
        ours = _versions()
        for w, r in sorted(reports.items()):
            diff = {k: (v, r["versions"].get(k)) for k, v in ours.items() if r["versions"].get(k) != v}
            if diff:
                warnings.warn(f"worker {w} runs other package versions than this client ({diff}: client, worker); "
                              "its shards may differ in bytes from a run elsewhere", RuntimeWarning, stacklevel=2)

    def _limit(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(2, 2 * sum(self.client.nthreads().values()))

    def run(self, job: ShardJobLike, tasks: Sequence[ShardLike],
            progress: Callable[[int], None]) -> Iterator[tuple[ShardLike, dict]]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        token = uuid.uuid4().hex[:8]  # a fresh key per run: never a stale result of an earlier run
        todo = list(reversed(tasks))
        running: dict = {}
        done = as_completed(loop=self.client.loop)

        def submit_more() -> None:
            limit = self._limit()
            while todo and len(running) < limit:
                t = todo.pop()
                f = self.client.submit(job, t, key=f"rawsynth-{t.name}-{token}", retries=self.retries, pure=False)
                running[f.key] = (f, t)
                done.add(f)

        submit_more()
        try:
            for f in done:
                _, t = running.pop(f.key)
                if f.status == "cancelled":  # the scheduler restarted or dropped this client
                    raise WorkerLostError(f"{t.name}: cancelled by {self._where()}; finished shards are kept, "
                                          "rerun with --resume")
                try:
                    stats = f.result()
                except KilledWorker as e:
                    raise WorkerLostError(
                        f"{t.name}: the workers running it died too often ({e}); often out of memory (see "
                        "docs/scale.md for the memory per worker); finished shards are kept, rerun with "
                        "--resume") from None
                f.release()
                progress(len(t.refs))
                yield t, stats
                submit_more()
        finally:
            if running:  # an error or an interruption: start nothing new
                self.client.cancel([f for f, _ in running.values()])
