"""Time-to-resume of the shard training stream (:class:`rddm.train.streams.BatchStream`): replay vs seek.

Builds a ``--samples``-sample stream of tiny (16×16) ``ddnet``-mode samples once (``--out``, reused when it
exists: a few real samples from ``rawsynth generate`` copied under new keys into ``--shard-size``-sample shards),
reads it up to ``--at`` (a fraction of the epoch) with the training defaults (``data.shuffle`` buffer,
``data.num_workers`` loader workers), then times the first batch of a new stream started at that position:

* replay (what resuming did before, and still does for checkpoints without reader states): every batch before
  the position is read, decoded and augmented again;
* seek: each reader starts at its saved shard and skips the samples before its place unread.

The seeking stream's first batch is checked equal to the replaying one's. Run:
``python -m benchmarks.perf.resume --samples 100000 --out /tmp/resume100k``. Figures: ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time
from pathlib import Path


def write_rekeyed(proto: list[dict], dst: Path, samples: int, shard_size: int) -> list[str]:
    """``samples`` samples cycling through ``proto`` (decoded :func:`rawsynth.shards.iter_shard` samples) under
    new keys ``0000000_0000``… into tars of ``shard_size`` samples under ``dst`` (no stats sidecar)."""
    dst.mkdir(parents=True, exist_ok=True)
    for first in range(0, samples, shard_size):
        with tarfile.open(dst / f"shard-{first // shard_size:06d}.tar", "w") as tar:
            for i in range(first, min(first + shard_size, samples)):
                key = f"{i:07d}_0000"
                for field, data in sorted(proto[i % len(proto)].items()):
                    if field.startswith("__"):
                        continue
                    if field == "meta.json":
                        data = json.dumps(dict(json.loads(data), key=key)).encode()
                    info = tarfile.TarInfo(f"{key}.{field}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return sorted(str(p) for p in dst.glob("shard-*.tar"))


def build(out: Path, samples: int, shard_size: int) -> list[str]:
    """``samples`` samples in ``ceil(samples / shard_size)`` shards under ``out`` (built once)."""
    done = out / "DONE"
    if not done.exists():
        from rawsynth.generate import generate
        from rawsynth.pipeline import SynthConfig
        from rawsynth.shards import iter_shard
        from rawsynth.sources import bundled_sources

        seed_dir = out / "seed"
        generate(bundled_sources()[:4], seed_dir, SynthConfig(mode="ddnet", crop=16, crops_per_image=2,
                                                              save_srgb=False), seed=0, shard_size=8, workers=1,
                 progress=False)
        proto = [s for p in sorted(seed_dir.glob("shard-*.tar")) for s in iter_shard(p)]
        write_rekeyed(proto, out / "stream", samples, shard_size)
        done.write_text("ok")
    return sorted(str(p) for p in (out / "stream").glob("shard-*.tar"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rawsynth-resume-bench"))
    ap.add_argument("--at", type=float, default=0.9, help="resume position, as a fraction of the epoch")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--shuffle", type=int, default=1000)
    a = ap.parse_args(argv)

    import torch

    from rddm.config import DataConfig
    from rddm.train.streams import BatchStream, StreamPosition

    shards = build(a.out, a.samples, a.shard_size)
    data = DataConfig(mode="ddnet", crop=16, flips=True, shuffle=a.shuffle, num_workers=a.num_workers,
                      handler="raise")
    readers = max(a.num_workers, 1)
    index = int(a.at * (a.samples // readers // a.batch_size) * readers)
    print(f"{len(shards)} shards, {a.samples} samples; batch {a.batch_size}, {a.num_workers} workers, shuffle "
          f"{a.shuffle}; resuming after batch {index} of epoch 0")
    # replay (the old resume; also what a checkpoint without reader states gets): its first batch is the one at
    # the position; the suite's tests show it equals the uninterrupted stream's. Its position after that batch
    # carries the reader states: seek from there, and compare with replay's next batch.
    t0 = time.perf_counter()
    replay = BatchStream(shards, data, a.batch_size, 0, StreamPosition(0, index))
    replay.next()
    t_replay = time.perf_counter() - t0
    pos = replay.position
    want = replay.next()
    t0 = time.perf_counter()
    got = BatchStream(shards, data, a.batch_size, 0, pos).next()
    t_seek = time.perf_counter() - t0
    same = got["key"] == want["key"] and torch.equal(got["raw"], want["raw"]) and torch.equal(got["hq"], want["hq"])
    print(f"replay: {t_replay:.2f} s to the first batch after {index} batches")
    print(f"seek:   {t_seek:.2f} s to the first batch after {index + 1} batches (identical to replay's: {same})")
    if not same:
        raise SystemExit("the seeking stream's batch differs from the replaying one's")
    print(f"seek is {t_replay / t_seek:.1f}x faster than replay")

if __name__ == "__main__":
    main()
