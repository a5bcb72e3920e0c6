"""One shard of ``rawsynth generate``: decode its sources, synthesise its samples, write its tar and stats.

:class:`ShardJob` is the picklable task every backend (:mod:`rawsynth.backends`) runs; :func:`run_shard` does the
work. Split out of :mod:`rawsynth.generate`, which re-exports every name here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import shards as _shards  # looked up at call time (tests replace write_shard to simulate a full disk)
from .backends.local import worker_init
from .errors import InputError, RawsynthError
from .generate_out import _done
from .generate_plan import SampleRef, ShardTask
from .io.atomic import atomic_output
from .io.dng import encode_dng
from .io.images import decode_srgb
from .pipeline import SynthConfig, apply_crop, sample_crop, synthesize
from .rng import numpy_rng
from .shards.checksums import MEMBER_CHECKSUMS, member_checksums
from .sources import Source, is_escaped, read_regular_file

__all__ = ["run_shard", "ShardJob"]


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
