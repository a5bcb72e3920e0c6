"""`rawsynth generate --backend dask`: a real LocalCluster of 2 worker processes; same bytes as a local run, a
worker SIGKILLed mid-task, exhausted retries then resume, resume across backends, unusable schedulers/workers."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import dask
import pytest

distributed = pytest.importorskip("distributed")

from rawsynth.backends import DaskBackend, WorkerLostError  # noqa: E402
from rawsynth.cli import main  # noqa: E402
from rawsynth.errors import ConfigError  # noqa: E402
from rawsynth.generate import ShardJob, generate, plan_shards  # noqa: E402
from rawsynth.pipeline import SynthConfig  # noqa: E402
from rawsynth.sources import bundled_sources  # noqa: E402

from .conftest import kill_after_shards, shard_tree  # noqa: E402

# 8 bundled photos x 2 crops of 64^2, one sample per shard: 16 shards, a few seconds of work
CFG = SynthConfig(crop=64, crops_per_image=2)
SEED = 5
CLI = [sys.executable, "-m", "rawsynth", "generate", "--crop", "64", "--crops-per-image", "2", "--shard-size", "1",
       "--seed", str(SEED), "--no-progress"]

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker plugin below, without importing tests/


def _generate(out: Path, **kw):
    return generate(bundled_sources(), out, CFG, seed=SEED, shard_size=1, progress=False, **kw)


@pytest.fixture(scope="module")
def cluster():
    # Worker processes fork from a server that has imported torch and rawsynth once, so that the two workers and
    # each restart after a kill do not pay a cold import (~5 s each on two busy cores). Same code, same bytes.
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        distributed.utils.get_mp_context().set_forkserver_preload(
            ["distributed", "rawsynth.backends.preload"])
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                      silence_logs=logging.ERROR) as c, \
                distributed.Client(c, set_as_default=False) as client:
            yield c, client


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "out"
    _generate(out, workers=1)
    return shard_tree(out)


def _running(dask_worker) -> int:
    return len(dask_worker.state.all_running_tasks)


def _wait_idle(client) -> None:
    """Until no worker runs a task (tasks of a dead client finish in the background)."""
    deadline, quiet = time.time() + 60, 0
    while quiet < 3 and time.time() < deadline:
        quiet = quiet + 1 if sum(client.run(_running).values()) == 0 else 0
        time.sleep(0.1)


class KillWorker(distributed.WorkerPlugin):
    """SIGKILL the worker process as it starts running a task whose key contains ``shard`` (the scheduler has
    handed the task to it), once per flag file (``once``) or every time; the flag file records pid and key."""

    def __init__(self, shard: str, flag: str, once: bool = True):
        self.shard, self.flag, self.once = shard, flag, once

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or self.shard not in str(key):
            return
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_WRONLY | (os.O_EXCL if self.once else os.O_APPEND))
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {key}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------------------------------ tests


def test_dask_cluster_writes_the_bytes_of_a_local_run(cluster, reference, tmp_path):
    _, client = cluster
    s = _generate(tmp_path / "out", backend=DaskBackend(client=client, max_in_flight=3))
    assert (s.samples, s.shards, s.skipped_shards) == (16, 16, 0)
    assert shard_tree(tmp_path / "out") == reference
    assert client.status == "running"  # a client passed in is left open
    assert not list((tmp_path / "out").glob(".*")) and not list((tmp_path / "out").glob("*.tmp"))


def test_without_scheduler_a_local_cluster_sized_by_workers_is_started_and_closed(reference, tmp_path, monkeypatch):
    real, started = distributed.LocalCluster, []

    def in_process(**kw):  # the real LocalCluster, in threads: its sizing and lifetime are what is tested here
        started.append(dict(kw))
        started.append(real(**dict(kw, processes=False)))
        return started[-1]

    monkeypatch.setattr(distributed, "LocalCluster", in_process)
    assert main(["generate", "--out", str(tmp_path / "out"), "--crop", "64", "--crops-per-image", "2",
                 "--shard-size", "1", "--seed", str(SEED), "--no-progress", "--backend", "dask", "--workers", "2"]) == 0
    kw, cluster = started
    assert (kw["n_workers"], kw["threads_per_worker"], kw["processes"]) == (2, 1, True)
    assert cluster.status.name == "closed"
    assert shard_tree(tmp_path / "out") == reference


def test_a_worker_killed_running_a_shard_is_replaced_and_the_bytes_do_not_change(cluster, reference, tmp_path):
    c, client = cluster
    flag = tmp_path / "killed"
    client.register_plugin(KillWorker("shard-000003", str(flag)), name="kill")
    try:
        _generate(tmp_path / "out", backend=DaskBackend(client=client))
    finally:
        client.unregister_worker_plugin("kill")
    pid, key = flag.read_text().split()
    assert "shard-000003" in key and not _alive(int(pid))  # a worker really died while running that shard
    assert shard_tree(tmp_path / "out") == reference
    client.wait_for_workers(2, timeout=60)


def test_workers_dying_too_often_stop_the_run_then_resume_finishes_it(cluster, reference, tmp_path):
    c, client = cluster
    out = tmp_path / "out"
    c.scheduler.allowed_failures = 0  # the first death of a task's worker fails the task
    client.register_plugin(KillWorker("shard-000006", str(tmp_path / "flag"), once=False), name="kill")
    try:
        with pytest.raises(WorkerLostError, match="shard-000006.*--resume"):
            _generate(out, backend=DaskBackend(client=client, max_in_flight=1))  # one task on the dying worker
    finally:
        client.unregister_worker_plugin("kill")
        c.scheduler.allowed_failures = 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["shards"][6]["sha256"] is None
    done = [e["name"] for e in manifest["shards"] if e["sha256"]]
    assert done and all(reference[n] == (out / n).read_bytes() for n in done)  # finished shards are kept
    client.wait_for_workers(2, timeout=60)
    _wait_idle(client)
    s = _generate(out, backend=DaskBackend(client=client), resume=True)
    assert s.skipped_shards >= len(done) and shard_tree(out) == reference


def test_resume_local_run_with_dask(cluster, reference, tmp_path, monkeypatch):
    import errno

    import rawsynth.shards

    _, client = cluster
    out = tmp_path / "out"
    real, calls = rawsynth.shards.write_shard, []

    def disk_full_at_the_fourth_shard(path, samples):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, samples)

    monkeypatch.setattr("rawsynth.shards.write_shard", disk_full_at_the_fourth_shard)  # this process only
    with pytest.raises(OSError, match="No space"):
        _generate(out, workers=1)
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    s = _generate(out, backend=DaskBackend(client=client), resume=True)
    assert s.skipped_shards == 3 and s.samples == 13 and shard_tree(out) == reference


def test_resume_dask_run_locally(cluster, reference, tmp_path):
    c, client = cluster
    out = tmp_path / "out"
    proc = subprocess.Popen(CLI + ["--out", str(out), "--backend", "dask", "--scheduler", c.scheduler_address],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after_shards(proc, out, 2)
    assert len(list(out.glob("*.stats.json"))) < 16  # really interrupted
    _wait_idle(client)  # the dead client's running tasks finish (they write whole shards or nothing)
    s = _generate(out, workers=1, resume=True)
    assert s.skipped_shards >= 2 and shard_tree(out) == reference


def test_shard_job_is_idempotent(tmp_path, reference):
    (tmp_path / "out").mkdir()
    task = plan_shards(sorted(bundled_sources()), 2, 1)[4]
    job = ShardJob(CFG, SEED, str(tmp_path / "out"), resume=True)
    stats = job(task)
    tar = tmp_path / "out" / "shard-000004.tar"
    before = os.stat(tar)
    assert job(task) == stats and os.stat(tar).st_mtime_ns == before.st_mtime_ns  # not rewritten
    assert tar.read_bytes() == reference["shard-000004.tar"]
    fresh = ShardJob(CFG, SEED, str(tmp_path / "out"))  # not resuming: never adopts, rewrites the same bytes
    assert fresh(task)["sha256"] == stats["sha256"] and os.stat(tar).st_mtime_ns != before.st_mtime_ns
    assert tar.read_bytes() == reference["shard-000004.tar"]
    (tmp_path / "out" / "shard-000004.stats.json").unlink()  # a worker died between the tar and its stats
    assert {k: v for k, v in job(task).items() if k != "seconds"} == reference["shard-000004.stats.json"]


def test_workers_that_cannot_see_the_output_folder_or_run_another_version(cluster, tmp_path, monkeypatch):
    _, client = cluster
    backend = DaskBackend(client=client)
    with pytest.raises(ConfigError, match="cannot see the output folder .*shared filesystem"):
        backend.check(str(tmp_path / "nowhere"), "probe", None)
    with pytest.raises(ConfigError, match="not the client's folder"):
        backend.check(str(tmp_path), "no-such-probe", None)
    with pytest.raises(ConfigError, match="cannot read the source"):
        (tmp_path / "probe").write_bytes(b"")
        backend.check(str(tmp_path), "probe", str(tmp_path / "missing.png"))
    backend.check(str(tmp_path), "probe", None)  # all well
    monkeypatch.setattr("rawsynth.backends.dask.__version__", "0.0.0-other")
    with pytest.raises(ConfigError, match="runs rawsynth .*, this client 0.0.0-other"):
        backend.check(str(tmp_path), "probe", None)


def test_unusable_scheduler_fails_before_anything_is_written(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        addr = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out"
    base = ["generate", "--out", str(out), "--crop", "64", "--no-progress"]
    assert main(base + ["--backend", "dask", "--scheduler", addr, "--scheduler-timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at {addr}" in err and "drop --scheduler" in err
    assert main(base + ["--backend", "dask", "--scheduler", "tcp://host-without-port"]) == 2
    assert "not a usable address" in capsys.readouterr().err
    assert main(base + ["--scheduler", addr]) == 2
    assert "needs --backend dask" in capsys.readouterr().err
    assert not out.exists()


def test_a_scheduler_without_workers_is_a_typed_error():
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        backend = DaskBackend(empty.scheduler_address, worker_timeout=0.5)
        with pytest.raises(ConfigError, match=f"{empty.scheduler_address} has no workers.*dask worker"):
            backend.open()
        assert backend.client is None  # closed again
