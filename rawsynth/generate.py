"""``rawsynth generate``: sources → shard plan → workers → webdataset shards, stats and a manifest.

Built on img2dataset's model: a shard is the unit of work, retry and resume. A shard's content is a pure
function of (sorted sources, crops per image, seed, shard size, config): sample ``k`` of the run is crop
``k mod crops_per_image`` of source ``k div crops_per_image`` and lands in shard ``k div shard_size``, and every
draw of a sample derives from (seed, key). Each shard is written to ``shard-NNNNNN.tar.<pid>.<random>.tmp`` and renamed;
``shard-NNNNNN.stats.json`` is written last and marks it done (``--resume`` adopts a shard only if its tar still
has the size and SHA-256 recorded there; the stats also record every member's SHA-256 for the reader). A failed
sample becomes a row in the stats, not an exception. ``manifest.json`` records the config, seed, version, inputs
and every shard. One run at a time holds ``--out`` (:mod:`rawsynth.runlock`); SIGTERM stops a run like Ctrl-C
(:mod:`rawsynth.signals`).

Where the shard tasks run is a backend (:mod:`rawsynth.backends`: this machine, or a Dask cluster); each runs
the same :class:`ShardJob`, so the bytes never depend on it.

The parts live in :mod:`rawsynth.generate_plan` (the plan), :mod:`rawsynth.generate_job` (one shard's work) and
:mod:`rawsynth.generate_out` (the output folder and manifest); every name is re-exported here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .backends import ShardBackend, make_backend
from .errors import ConfigError
from .generate_job import ShardJob, _failure, _load_source, _make_sample, run_shard
from .generate_out import (MANIFEST, _done, _has_stats, _identity, _make_out_dir, _prepare_out_dir, _remove_tmp,
                           _write_manifest, load_manifest)
from .generate_plan import SampleRef, ShardTask, plan_shards, shard_name
from .pipeline import SynthConfig
from .runlock import RunLock
from .signals import terminate_as_interrupt
from .sources import Source

if TYPE_CHECKING:
    from .storage import RemoteOut

__all__ = ["SampleRef", "ShardTask", "ShardJob", "plan_shards", "run_shard", "generate", "GenerateSummary", "MANIFEST",
           "FORMAT_VERSION", "shard_name", "load_manifest"]
# (private helpers re-exported for the modules and tests that import them from here)
_REEXPORTED = (_done, _failure, _has_stats, _identity, _load_source, _make_out_dir, _make_sample, _prepare_out_dir,
               _remove_tmp, _write_manifest)

#: The format version written by default (``SynthConfig.format_version`` chooses; see ``docs/format.md``).
FORMAT_VERSION = 2


def _generate_remote(sources, url: str, config: SynthConfig, *, resume: bool, overwrite: bool, **kw) -> GenerateSummary:
    """:func:`generate` into an fsspec URL through a local staging folder (see :mod:`rawsynth.storage`)."""
    import tempfile

    from .storage import RemoteOut

    remote = RemoteOut(url)
    with tempfile.TemporaryDirectory(prefix="rawsynth-staging-") as staging:
        remote.pull(Path(staging), overwrite)
        try:
            return generate(sources, staging, config, resume=resume, overwrite=False, publish=remote, **kw)
        except ConfigError as e:  # name the URL the user gave, not the staging folder
            raise ConfigError(str(e).replace(staging, url)) from None


@dataclass
class GenerateSummary:
    """What a run did (printed by the CLI)."""

    samples: int
    failures: int
    shards: int
    skipped_shards: int
    seconds: float
    bytes: int
    #: shards found finished by ``--resume`` but redone because their tar did not match their stats (a changed
    #: size or SHA-256: a bit flip, a truncation, a shard of another run)
    redone_shards: int = 0

    def line(self) -> str:
        rate = self.samples / self.seconds if self.seconds > 0 else float("nan")
        redone = f", {self.redone_shards} redone: tar did not match its stats" if self.redone_shards else ""
        return (f"{self.samples} samples, {self.failures} failures, {self.shards} shards "
                f"({self.skipped_shards} already done{redone}), {rate:.2f} samples/s, {self.bytes / 2**20:.1f} MiB")


def generate(sources: Sequence[Source], out_dir: str | os.PathLike, config: SynthConfig, *, seed: int = 0,
             shard_size: int = 1000, num_samples: int | None = None, workers: int = 1, resume: bool = False,
             overwrite: bool = False, progress: bool = True, backend: str | ShardBackend = "local",
             scheduler: str | None = None, retries: int = 2, scheduler_timeout: float = 30.0,
             publish: RemoteOut | None = None) -> GenerateSummary:
    """Generate the dataset into ``out_dir`` (see the module docstring).

    Args:
        sources: sorted sources (:func:`rawsynth.sources.collect_sources`).
        out_dir: output folder (created with its parents); locked for the run (:mod:`rawsynth.runlock`). Or an
            fsspec URL (``s3://bucket/prefix``, ``memory://x``): shards are made in a local staging folder and
            published there one by one, tar first and stats last (:mod:`rawsynth.storage`; no run lock on the
            remote side; the workers must see this machine's temporary folder).
        config: what to synthesise.
        seed: run seed.
        shard_size: samples per shard.
        num_samples: keep the first ``num_samples`` planned samples.
        workers: processes (1 = in this process); one shard per task. With ``backend="dask"`` and no
            ``scheduler``: the worker processes of the ``LocalCluster`` started for the run.
        resume: skip shards already done and intact (size and SHA-256 as in their stats), redo the others
            (whichever backend wrote them); :attr:`GenerateSummary.redone_shards` counts finished ones redone.
        overwrite: delete an existing dataset in ``out_dir`` first.
        progress: show a tqdm bar in samples/s.
        backend: ``"local"``, ``"dask"`` or a :class:`rawsynth.backends.ShardBackend` (e.g.
            ``DaskBackend(client=client)``); the shard bytes are the same for all.
        scheduler: ``dask``: the address of a running scheduler (``tcp://HOST:8786``).
        retries: ``dask``: resubmissions of a shard task that raised.
        scheduler_timeout: ``dask``: seconds to try to connect to ``scheduler``.
        publish: internal: the :class:`rawsynth.storage.RemoteOut` of a URL ``out_dir``.

    Raises:
        ConfigError: bad options, an unusable ``out_dir``, a conflicting existing dataset, another run using
            ``out_dir`` (its PID and host named), an unreachable scheduler or workers that cannot see
            ``out_dir`` (all before any shard is written).
        KeyboardInterrupt: SIGINT, or SIGTERM (as :class:`rawsynth.signals.Terminated`, when called from the
            main thread): workers are stopped, tmp files removed, the manifest records the finished shards.
        OSError: writing failed (e.g. disk full); finished shards stay, rerun with ``resume=True``.
        WorkerLostError: ``dask``: a shard's workers kept dying; finished shards stay, rerun with ``resume=True``.
    """
    from tqdm import tqdm

    from .storage import is_url

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if is_url(out_dir):
        return _generate_remote(sources, out_dir, config, seed=seed, shard_size=shard_size, num_samples=num_samples,
                                workers=workers, resume=resume, overwrite=overwrite, progress=progress,
                                backend=backend, scheduler=scheduler, retries=retries,
                                scheduler_timeout=scheduler_timeout)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    runner = make_backend(backend, workers=workers, scheduler=scheduler, retries=retries,
                          scheduler_timeout=scheduler_timeout)
    # absolute paths: workers on other machines (or with another working directory) read and write the same files
    sources = sorted(Source(s.name, os.path.abspath(s.path)) for s in sources)
    plan = plan_shards(sources, config.crops_per_image, shard_size, num_samples)
    out = Path(out_dir)
    identity = _identity(config, seed, shard_size, plan, sources)
    # SIGTERM raises like Ctrl-C; connect first: an unreachable cluster fails before the output folder is touched
    with terminate_as_interrupt(), runner:
        _make_out_dir(out)
        with RunLock(out):  # held until every worker is stopped and the manifest is written
            _prepare_out_dir(out, identity, resume, overwrite)
            results: dict[str, dict] = {}
            todo, redone = [], 0
            for t in plan:
                done = _done(out, t) if resume else None
                if done is not None:
                    results[t.name] = done
                else:
                    todo.append(t)
                    redone += resume and _has_stats(out, t)
            skipped = len(results)
            _write_manifest(out, identity, plan, results, publish)
            t0 = time.perf_counter()
            bar = tqdm(total=sum(len(t.refs) for t in todo), unit="sample", disable=not progress,
                       dynamic_ncols=True, desc="rawsynth generate")
            try:
                if todo:
                    _check_workers(runner, out.absolute(), todo[0].refs[0].source.path)
                # the job never adopts a shard the client did not: shards on disk were checked above
                for t, stats in runner.run(ShardJob(config, seed, str(out.absolute())), todo, bar.update):
                    if publish is not None:
                        publish.push_shard(out, t.name)
                    results[t.name] = stats
            finally:
                bar.close()
                runner.close()  # (again at the end of `with runner`: closing twice is harmless)
                if runner.owns_workers and len(results) < len(plan):
                    # interrupted: every worker is stopped now. Shards they finished that the client had not
                    # heard of yet are recorded (if intact), and what is left of dead writers is removed
                    for t in todo:
                        if t.name not in results and (done := _done(out, t)) is not None:
                            if publish is not None:
                                publish.push_shard(out, t.name)
                            results[t.name] = done
                    _remove_tmp(out)
                _write_manifest(out, identity, plan, results, publish)
        if len(results) == len(plan):  # leftovers of workers killed mid-write, now all redone
            _remove_tmp(out)
    seconds = time.perf_counter() - t0
    new = [results[t.name] for t in todo]
    return GenerateSummary(samples=sum(r["count"] for r in new), failures=sum(len(r["failures"]) for r in new),
                           shards=len(plan), skipped_shards=skipped, seconds=seconds,
                           bytes=sum(r["bytes"] for r in results.values()), redone_shards=redone)


def _check_workers(runner: ShardBackend, out: Path, source_path: str) -> None:
    """Let the backend check that its workers see ``out`` (through a probe file written here) and a source."""
    probe = f".rawsynth-probe-{uuid.uuid4().hex[:12]}.tmp"
    (out / probe).write_bytes(b"")
    try:
        runner.check(str(out), probe, source_path)
    finally:
        (out / probe).unlink(missing_ok=True)
