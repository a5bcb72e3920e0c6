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
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._version import __version__
from .backends import ShardBackend, make_backend
from .backends.local import worker_init
from .errors import ConfigError, InputError, RawsynthError
from .io.atomic import atomic_output
from .io.dng import encode_dng
from .io.images import decode_srgb
from .pipeline import SynthConfig, apply_crop, sample_crop, synthesize
from .rng import numpy_rng
from . import shards as _shards  # looked up at call time (tests replace write_shard to simulate a full disk)
from .runlock import RunLock
from .shards.checksums import MEMBER_CHECKSUMS, member_checksums
from .signals import terminate_as_interrupt
from .sources import Source, is_escaped, read_regular_file

if TYPE_CHECKING:
    from .storage import RemoteOut

__all__ = ["SampleRef", "ShardTask", "ShardJob", "plan_shards", "run_shard", "generate", "GenerateSummary", "MANIFEST",
           "FORMAT_VERSION", "shard_name", "load_manifest"]

MANIFEST = "manifest.json"
#: The format version written by default (``SynthConfig.format_version`` chooses; see ``docs/format.md``).
FORMAT_VERSION = 2


@dataclass(frozen=True)
class SampleRef:
    """One planned sample: its key, its source and which of the source's crops it is."""

    key: str
    source: Source
    crop_index: int


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: a shard's index, name and samples (in key order)."""

    index: int
    name: str
    refs: tuple[SampleRef, ...]


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def plan_shards(sources: Sequence[Source], crops_per_image: int, shard_size: int,
                num_samples: int | None = None) -> list[ShardTask]:
    """The shard plan: a pure function of the sorted sources, crops per image, shard size and sample count.

    Sample ``k`` is crop ``k % crops_per_image`` of ``sources[k // crops_per_image]``, key
    ``f"{k // crops_per_image:07d}_{k % crops_per_image:04d}"`` (wider crop field when ``crops_per_image``
    exceeds 10⁴, so keys always sort in plan order); shard ``j`` holds samples
    ``[j·shard_size, (j+1)·shard_size)``. ``num_samples`` keeps the first ``num_samples``.
    """
    if shard_size < 1 or crops_per_image < 1:
        raise ConfigError(f"shard_size and crops_per_image must be >= 1, got {shard_size}, {crops_per_image}")
    total = len(sources) * crops_per_image
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        if num_samples > total:
            raise ConfigError(f"num_samples={num_samples} exceeds {len(sources)} sources x {crops_per_image} "
                              f"crops = {total}; raise --crops-per-image or add sources")
        total = num_samples
    width = max(4, len(str(crops_per_image - 1)))  # zero-padded so keys sort in plan order
    refs = [SampleRef(f"{k // crops_per_image:07d}_{k % crops_per_image:0{width}d}", sources[k // crops_per_image],
                      k % crops_per_image) for k in range(total)]
    return [ShardTask(j, shard_name(j), tuple(refs[i:i + shard_size]))
            for j, i in enumerate(range(0, total, shard_size))]


def _load_source(src: Source) -> tuple[np.ndarray, str]:
    import cv2

    data = read_regular_file(src.path, src.name)
    img = decode_srgb(data, name=src.name).image
    # = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8) (float32 product, round half to even, saturate) on
    # decode_srgb's finite, non-negative values (checked exhaustively over [0, 1]; above 1 both give 255), in one
    # pass with no float temporaries (5.3 -> 0.2 ms on a 1000x872 photo)
    u8 = cv2.convertScaleAbs(img, alpha=255.0)
    return u8, hashlib.sha256(data).hexdigest()


def _make_sample(ref: SampleRef, image: np.ndarray, digest: str, config: SynthConfig, seed: int) -> dict:
    box = sample_crop(numpy_rng(seed, ref.key, "crop"), image.shape[:2], config.crop, config.small_policy,
                      ref.source.name)
    source = {"path": ref.source.name, "sha256": digest}
    if is_escaped(ref.source):  # a file name that is not valid UTF-8 (see rawsynth.sources.name_to_bytes)
        source["path_escaped"] = True
    s = synthesize(apply_crop(image, box), ref.key, seed, config, source=source, crop=box)
    dng = None
    if config.save_dng:
        cam = s.meta.get("camera") or {}  # a sampled camera's make and model (sensor and matrix are in s)
        who = {k: cam[k] for k in ("make", "model") if cam.get(k)}
        dng = encode_dng(s.raw_dn, s.pattern, s.sensor, s.isp, iso=s.noise.iso, **who)
    return _shards.encode_sample(s.key, s.raw_dn, s.hq_linear, s.meta, lq_srgb=s.lq_srgb, gt_srgb=s.gt_srgb, dng=dng,
                                 members=config.members, format_version=config.format_version)


def _failure(ref: SampleRef, e: BaseException) -> dict:
    if isinstance(e, InputError):
        reason, detail = e.reason, str(e)
    elif isinstance(e, RawsynthError):
        reason, detail = type(e).__name__, str(e)
    else:
        reason, detail = "error", f"{type(e).__name__}: {e}"
    return {"key": ref.key, "source": ref.source.name, "reason": reason, "detail": detail}


def run_shard(task: ShardTask, config: SynthConfig, seed: int, out_dir: str | os.PathLike,
              on_sample: Callable[[], None] | None = None) -> dict:
    """Make and write one shard; return its stats (also written, last, to ``{name}.stats.json``).

    Bad inputs never stop the shard: each failed sample becomes a row ``{key, source, reason, detail}`` in
    ``stats["failures"]``. Only I/O errors on the output (e.g. a full disk) raise, leaving no file under
    the shard's final name.
    """

    t0 = time.perf_counter()
    out = Path(out_dir)
    samples, failures = [], []
    cached: tuple[str, np.ndarray, str] | None = None
    for ref in task.refs:
        try:
            if cached is None or cached[0] != ref.source.path:
                cached = None
                image, digest = _load_source(ref.source)
                cached = (ref.source.path, image, digest)
            samples.append(_make_sample(ref, cached[1], cached[2], config, seed))
        except Exception as e:  # noqa: BLE001 - a bad sample is a row, never a crash
            failures.append(_failure(ref, e))
        if on_sample is not None:
            on_sample()
    shard = _shards.write_shard(out / f"{task.name}.tar", samples)
    stats = {"shard": task.name, "count": shard.count, "failures": failures, "bytes": shard.bytes,
             "sha256": shard.sha256, "seconds": round(time.perf_counter() - t0, 3),
             "keys": [r.key for r in task.refs], MEMBER_CHECKSUMS: member_checksums(samples)}
    with atomic_output(out / f"{task.name}.stats.json") as tmp, open(tmp, "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    return stats


@dataclass(frozen=True)
class ShardJob:
    """The task every backend runs for one shard (picklable; idempotent).

    ``job(task)`` returns the stats of ``task``'s shard. With ``resume``, a shard already complete in ``out_dir``
    (its stats file is there and its tar has the recorded size and SHA-256) is adopted: its stats are read
    back and nothing is written. Otherwise :func:`run_shard` makes it (again). Running a job twice, or again
    after its worker died at any point, therefore leaves the same bytes. Sets one torch and one OpenCV thread
    in the process that runs it.

    Attributes:
        config: what to synthesise.
        seed: run seed.
        out_dir: the output folder, absolute (workers elsewhere must see it at this path).
        resume: adopt shards that are already complete and intact (``--resume``); without it, never: a shard
            found there was not made by this run.
    """

    config: SynthConfig
    seed: int
    out_dir: str
    resume: bool = False

    def __call__(self, task: ShardTask, on_sample: Callable[[], None] | None = None) -> dict:
        worker_init()
        done = _done(Path(self.out_dir), task) if self.resume else None
        if done is not None:
            return done
        # importing basicsr runs np.seterr(divide="ignore", invalid="ignore"), which numpy scopes to the importing
        # thread; Dask runs tasks in other threads, so set it here for every backend alike (warnings only)
        with np.errstate(divide="ignore", invalid="ignore"):
            return run_shard(task, self.config, self.seed, self.out_dir, on_sample=on_sample)


def load_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The ``manifest.json`` of an output folder or fsspec URL, ``None`` when there is none."""
    from .storage import is_url, url_to_fs

    if is_url(out_dir):
        fs, root = url_to_fs(out_dir)
        p = f"{out_dir.rstrip('/')}/{MANIFEST}"
        try:
            return json.loads(fs.cat_file(f"{root.rstrip('/')}/{MANIFEST}"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(p, "unreadable manifest", str(e), hint="remove it or use --overwrite") from None
    p = Path(out_dir) / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(p, "unreadable manifest", str(e), hint="remove it or use --overwrite") from None


def _identity(config: SynthConfig, seed: int, shard_size: int, plan: list[ShardTask],
              sources: Sequence[Source]) -> dict:
    return {"format": "rawsynth-shards", "format_version": config.format_version, "version": __version__,
            "config": config.to_dict(), "seed": seed, "shard_size": shard_size,
            "num_samples": sum(len(t.refs) for t in plan), "inputs": [s.name for s in sources]}


def _make_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if not out.exists():
        try:
            out.mkdir(parents=True)
        except FileExistsError:  # made meanwhile by someone else: fine if it is a folder
            if not out.is_dir():
                raise ConfigError(f"--out {out} exists and is not a folder") from None
        except OSError as e:
            raise ConfigError(f"--out {out} cannot be created: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out} is not writable; choose another folder or fix its permissions")


def _prepare_out_dir(out: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    """Check (and with ``overwrite`` empty) the locked output folder for this run."""
    existing = load_manifest(out)
    ours = list(out.glob("shard-*.tar")) + list(out.glob("shard-*.stats.json"))
    if overwrite:
        for p in ours + list(out.glob("shard-*.tmp")) + list(out.glob(".shard-*.tmp")) + [out / MANIFEST]:
            p.unlink(missing_ok=True)
        return
    if existing is not None:
        old = {k: existing.get(k) for k in identity}
        if old != identity:
            diff = sorted(k for k in identity if old.get(k) != identity[k])
            raise ConfigError(f"{out} holds a different dataset (manifest differs in {diff}); use a new --out, "
                              "or --overwrite to replace it")
        if not resume:
            raise ConfigError(f"{out} already holds this dataset; pass --resume to finish it or --overwrite "
                              "to regenerate it")
    elif ours and not resume:
        raise ConfigError(f"{out} holds shards but no manifest; use a new --out or --overwrite")
    for p in list(out.glob("*.tmp")) + list(out.glob(".*.tmp")):  # leftovers of a killed run
        p.unlink(missing_ok=True)


def _done(out: Path, task: ShardTask) -> dict | None:
    """The stats of a finished, intact shard (stats file present, tar present with the recorded size and
    SHA-256), else None."""
    from .shards import sha256_file

    sp, tp = out / f"{task.name}.stats.json", out / f"{task.name}.tar"
    if not (sp.exists() and tp.exists()):
        return None
    try:
        stats = json.loads(sp.read_text())
        if stats.get("bytes") != tp.stat().st_size or stats.get("sha256") != sha256_file(tp):
            return None
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return stats


def _has_stats(out: Path, task: ShardTask) -> bool:
    return (out / f"{task.name}.stats.json").exists()


def _write_manifest(out: Path, identity: dict, plan: list[ShardTask], results: dict[str, dict],
                    publish: RemoteOut | None = None) -> None:
    shards = []
    for t in plan:
        r = results.get(t.name)
        shards.append({"name": f"{t.name}.tar", "planned": len(t.refs),
                       "count": r["count"] if r else None, "failures": len(r["failures"]) if r else None,
                       "bytes": r["bytes"] if r else None, "sha256": r["sha256"] if r else None})
    manifest = dict(identity, complete=len(results) == len(plan), shards=shards)
    with atomic_output(out / MANIFEST) as tmp, open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    if publish is not None:
        publish.push_manifest(out)


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


def _remove_tmp(out: Path) -> None:
    for p in list(out.glob("shard-*.tmp")) + list(out.glob(".shard-*.tmp")):
        p.unlink(missing_ok=True)


def _check_workers(runner: ShardBackend, out: Path, source_path: str) -> None:
    """Let the backend check that its workers see ``out`` (through a probe file written here) and a source."""
    probe = f".rawsynth-probe-{uuid.uuid4().hex[:12]}.tmp"
    (out / probe).write_bytes(b"")
    try:
        runner.check(str(out), probe, source_path)
    finally:
        (out / probe).unlink(missing_ok=True)
