"""The pipeline stages of the shard reader (:class:`rawsynth.data.RawPairDataset`): shard list, opening, tar
members, member checksums, shuffle buffer, decode and augmentation. Internal: use :func:`rawsynth.data.make_dataset`.
"""

from __future__ import annotations

import itertools
import random
import warnings
from urllib.parse import urlparse

import webdataset as wds
from torch.utils.data import IterableDataset

from .data_samples import bayer_crop_flip, decode_pair
from .data_tar import SeekPlan
from .errors import ConfigError
from .rng import derive_seed, numpy_rng
from .storage import is_url, open_binary


def _warn_and_continue(exn: BaseException) -> bool:
    """Warn about a bad sample or shard and go on (like ``webdataset.warn_and_continue``, without its sleep)."""
    warnings.warn(f"rawsynth.data: skipping bad data: {exn!r}", RuntimeWarning, stacklevel=2)
    return True


#: The ``handler`` names of :func:`make_dataset`: what to do with a corrupt shard or sample.
HANDLERS = {"raise": wds.reraise_exception, "warn": _warn_and_continue, "skip": wds.ignore_and_continue}



class _EpochClock:
    """The epoch index of a dataset, shared by its stages (each worker process holds its own copy), and the
    seek plan of a resumed pass.

    ``epoch = base + passes``: ``base`` is the value given to :meth:`RawPairDataset.set_epoch`, ``passes``
    the number of passes over the shard list started since, in this process. ``pending`` (set with the
    epoch) is ``{"rotation": r, "workers": {"W": reader state}}``: the next pass (only) starts each reader
    at its saved state, and DataLoader worker ``w`` plays reader ``(w + r) % num_workers`` so that the
    loader's round-robin continues with the reader whose batch was due next.
    """

    def __init__(self):
        self.base = 0
        self.passes = 0
        self.current = 0
        self.pending: dict | None = None
        self.rotation = 0
        self.states: dict = {}

    def start_pass(self) -> int:
        self.current = self.base + self.passes
        self.passes += 1
        plan, self.pending = self.pending, None
        self.rotation = int(plan.get("rotation", 0)) if plan else 0
        self.states = dict(plan.get("workers") or {}) if plan else {}
        return self.current

    def worker(self) -> tuple[int, int]:
        """``(reader index, number of readers)`` of this DataLoader worker (``(0, 1)`` without workers)."""
        _, _, worker, workers = wds.utils.pytorch_worker_info()
        return (worker + self.rotation) % workers, workers

    def worker_name(self) -> str:
        rank = wds.utils.pytorch_worker_info()[0]
        return f"rank{rank}-worker{self.worker()[0]}"

    def plan(self) -> SeekPlan | None:
        """This reader's :class:`~rawsynth.data_tar.SeekPlan` in a resumed pass, else ``None``."""
        state = self.states.get(str(self.worker()[0]))
        return SeekPlan(state) if state else None


class _ShardList(IterableDataset):
    """First stage: the shard URLs of one pass, as ``{"url": ...}`` dicts."""

    def __init__(self, urls: list[str], seed: int, shuffle: bool, resampled: bool, clock: _EpochClock):
        super().__init__()
        self.urls, self.seed, self.shuffle, self.resampled, self.clock = urls, seed, shuffle, resampled, clock

    def __iter__(self):
        epoch = self.clock.start_pass()  # eagerly, before the later stages start
        urls = list(self.urls)
        if self.resampled:
            rng = random.Random(derive_seed(self.seed, self.clock.worker_name(), f"resample/{epoch}"))
            return (dict(url=rng.choice(urls)) for _ in itertools.count())
        if self.shuffle:
            random.Random(derive_seed(self.seed, "shards", f"shuffle/{epoch}")).shuffle(urls)
        return iter([dict(url=u) for u in urls])


def _fsspec_protocols() -> set[str]:
    """Protocols fsspec knows (whether or not their package is installed); others go to webdataset's gopen
    (``pipe:``, ...)."""
    import fsspec

    return set(fsspec.available_protocols()) - {"file", "local"}


class _SplitByWorker:
    """``webdataset.split_by_worker`` by reader index (:meth:`_EpochClock.worker`): reader ``w`` of ``n`` takes
    shards ``w, w+n, ...`` of the (node's) list."""

    def __init__(self, clock: _EpochClock):
        self.clock = clock

    def __call__(self, src):
        w, n = self.clock.worker()
        yield from itertools.islice(src, w, None, n)


class _OpenShards:
    """Open each shard URL (like ``webdataset.cache.StreamingOpen``) and close it once it has been read. Each
    item gets ``"shard": k``, its index in this reader's list; in a resumed pass, shards without a sample to
    read are not opened (:meth:`SeekPlan.needs_shard`)."""

    def __init__(self, handler, clock: _EpochClock | None = None):
        self.handler, self.clock = handler, clock

    def __call__(self, src):
        plan = self.clock.plan() if self.clock is not None else None
        for k, item in enumerate(src):
            url = item["url"]
            if plan is not None and not plan.needs_shard(k):
                continue
            parsed = urlparse(url)
            try:
                if parsed.scheme in ("", "file"):
                    stream, extra = open(parsed.path, "rb"), {"local_path": parsed.path}
                elif is_url(url) and parsed.scheme in _fsspec_protocols():
                    stream, extra = open_binary(url), {}
                else:
                    stream, extra = wds.gopen(url), {}
            except Exception as e:  # noqa: BLE001 - the handler decides
                if self.handler(e):
                    continue
                break
            try:
                yield dict(url=url, stream=stream, shard=k, **extra)  # the tar reader asks for the next one when done
            finally:
                stream.close()


class _VerifySamples:
    """Check each encoded sample against the member checksums recorded in its shard's stats sidecar
    (:mod:`rawsynth.shards.checksums`); a mismatch goes to the handler. Shards without recorded checksums
    (no sidecar, or URLs fsspec does not handle such as ``pipe:``) pass unchecked. Runs before the shuffle
    buffer, so samples arrive shard by shard and one table is held at a time."""

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, src):
        from .shards.checksums import load_member_checksums, verify_sample

        url, table = None, None
        for s in src:
            try:
                if s.get("__url__") != url:
                    url, table = s.get("__url__"), None
                    parsed = urlparse(url or "")
                    if url and parsed.scheme in ("", "file"):
                        table = load_member_checksums(parsed.path)
                    elif url and is_url(url) and parsed.scheme in _fsspec_protocols():
                        table = load_member_checksums(url)
                if table is not None:
                    verify_sample(s, table, f"{url}:{s.get('__key__', '?')}")
            except Exception as e:  # noqa: BLE001 - the handler decides (raise, warn or skip)
                if self.handler(e):
                    continue
                break
            yield s


class _ShuffleSamples:
    """Buffer shuffle of encoded samples (``bufsize`` samples), seeded from (seed, epoch, rank, worker).

    With ``track``, each sample it gives holds ``"__pos__"``, the reader state after giving it (the
    :class:`~rawsynth.data_tar.SeekPlan` format: the last sample taken in, the buffered samples' places in
    buffer order, the random draws made, whether the input had ended). A resumed pass starts from such a state:
    the generator makes the same draws again (cheap: no data), the buffer is refilled with the samples it
    named (read again: their shards are opened, the others' members skipped), and the stream goes on exactly
    as the uninterrupted pass.
    """

    def __init__(self, bufsize: int, seed: int, clock: _EpochClock, track: bool = False):
        self.bufsize, self.seed, self.clock, self.track = bufsize, seed, clock, track

    def __call__(self, src):
        rng = random.Random(derive_seed(self.seed, self.clock.worker_name(), f"samples/{self.clock.current}"))
        src, plan = iter(src), self.clock.plan()
        buf, draws, last, flush = [], 0, None, False
        if plan is not None:
            for _ in range(plan.draws):
                rng.randrange(self.bufsize)
            buf, draws, last, flush = _refill(src, plan.buf), plan.draws, plan.after, plan.flush
        locs = [b.get("__loc__") for b in buf]  # kept beside buf: a snapshot per sample is one list copy
        if not flush:
            for s in src:
                last = s.get("__loc__")
                if len(buf) < self.bufsize:
                    buf.append(s)
                    locs.append(last)
                    continue
                i = rng.randrange(len(buf))
                draws += 1
                out, buf[i], locs[i] = buf[i], s, last
                if self.track:
                    out["__pos__"] = {"after": last, "buf": list(locs), "draws": draws}
                yield out
            rng.shuffle(buf)
            locs = [b.get("__loc__") for b in buf]
        for j, out in enumerate(buf):
            if self.track:
                out["__pos__"] = {"after": last, "buf": locs[j + 1:], "flush": True}
            yield out


def _refill(src, locs: list) -> list:
    """The shuffle buffer of a saved state: the samples at ``locs``, in that order, taken from the start of
    ``src`` (which gives them in stream order)."""
    slots = {loc: i for i, loc in enumerate(locs)}
    buf = [None] * len(locs)
    for _ in locs:
        s = next(src, None)
        loc = None if s is None else tuple(s.get("__loc__", ()))
        if loc not in slots or buf[slots[loc]] is not None:
            raise ConfigError(f"cannot resume the shard reader: sample {loc} is not the saved buffer's next one "
                              f"({sorted(set(slots) - {b['__loc__'] for b in buf if b is not None})[:3]} missing); "
                              "the shards changed or a sample became unreadable",
                              fix="resume with the shards the run was started with")
        buf[slots[loc]] = s
    return buf


class _DecodeAugment:
    """Decode each sample and apply its random crop/flips; bad samples go to the handler.

    ``n`` of the crop draw (``augment/{epoch}/{n}``) counts earlier occurrences of the key in the pass when
    ``resampled``; otherwise it is 0 (so a resumed pass needs no record of the keys it skipped). With
    ``track``, each sample holds ``"__stream__"``: its reader index and the reader state after it
    (``"__pos__"`` of the shuffle buffer, or the sample's own place without one)."""

    def __init__(self, crop: int | None, flips: bool, seed: int, clock: _EpochClock, handler,
                 resampled: bool = False, track: bool = False):
        self.crop, self.flips, self.seed, self.clock, self.handler = crop, flips, seed, clock, handler
        self.resampled, self.track = resampled, track

    def __call__(self, src):
        epoch = self.clock.current
        worker = self.clock.worker()[0]
        seen: dict[str, int] = {}
        for s in src:
            try:
                name = f"{s.get('__url__', '<shard>')}:{s.get('__key__', '?')}" if isinstance(s, dict) else "<shard>"
                pos = None
                if self.track and isinstance(s, dict):
                    pos = s.get("__pos__") or {"after": s.get("__loc__")}
                pair = decode_pair(s, name)
                n = seen.get(pair["key"], 0) if self.resampled else 0
                seen[pair["key"]] = n + 1
                rng = numpy_rng(self.seed, pair["key"], f"augment/{epoch}/{n}")
                pair = bayer_crop_flip(pair, self.crop, rng, hflip=self.flips, vflip=self.flips)
                if pos is not None:
                    pair["__stream__"] = {"worker": worker, **pos}
            except Exception as e:  # noqa: BLE001 - the handler decides (raise, warn or skip)
                if self.handler(e):
                    continue
                break
            yield pair
