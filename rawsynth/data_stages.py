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
from .rng import derive_seed, numpy_rng
from .storage import is_url, open_binary


def _warn_and_continue(exn: BaseException) -> bool:
    """Warn about a bad sample or shard and go on (like ``webdataset.warn_and_continue``, without its sleep)."""
    warnings.warn(f"rawsynth.data: skipping bad data: {exn!r}", RuntimeWarning, stacklevel=2)
    return True


#: The ``handler`` names of :func:`make_dataset`: what to do with a corrupt shard or sample.
HANDLERS = {"raise": wds.reraise_exception, "warn": _warn_and_continue, "skip": wds.ignore_and_continue}



class _EpochClock:
    """The epoch index of a dataset, shared by its stages (each worker process holds its own copy).

    ``epoch = base + passes``: ``base`` is the value given to :meth:`RawPairDataset.set_epoch`, ``passes``
    the number of passes over the shard list started since, in this process.
    """

    def __init__(self):
        self.base = 0
        self.passes = 0
        self.current = 0

    def start_pass(self) -> int:
        self.current = self.base + self.passes
        self.passes += 1
        return self.current


def _worker_name() -> str:
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return f"rank{rank}-worker{worker}"


class _ShardList(IterableDataset):
    """First stage: the shard URLs of one pass, as ``{"url": ...}`` dicts."""

    def __init__(self, urls: list[str], seed: int, shuffle: bool, resampled: bool, clock: _EpochClock):
        super().__init__()
        self.urls, self.seed, self.shuffle, self.resampled, self.clock = urls, seed, shuffle, resampled, clock

    def __iter__(self):
        epoch = self.clock.start_pass()  # eagerly, before the later stages start
        urls = list(self.urls)
        if self.resampled:
            rng = random.Random(derive_seed(self.seed, _worker_name(), f"resample/{epoch}"))
            return (dict(url=rng.choice(urls)) for _ in itertools.count())
        if self.shuffle:
            random.Random(derive_seed(self.seed, "shards", f"shuffle/{epoch}")).shuffle(urls)
        return iter([dict(url=u) for u in urls])


def _fsspec_protocols() -> set[str]:
    """Protocols fsspec knows (whether or not their package is installed); others go to webdataset's gopen
    (``pipe:``, ...)."""
    import fsspec

    return set(fsspec.available_protocols()) - {"file", "local"}


class _OpenShards:
    """Open each shard URL (like ``webdataset.cache.StreamingOpen``) and close it once it has been read."""

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, src):
        for item in src:
            url = item["url"]
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
                yield dict(url=url, stream=stream, **extra)  # the tar reader asks for the next one when done
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
    """Buffer shuffle of encoded samples (``bufsize`` samples), seeded from (seed, epoch, rank, worker)."""

    def __init__(self, bufsize: int, seed: int, clock: _EpochClock):
        self.bufsize, self.seed, self.clock = bufsize, seed, clock

    def __call__(self, src):
        rng = random.Random(derive_seed(self.seed, _worker_name(), f"samples/{self.clock.current}"))
        buf = []
        for s in src:
            if len(buf) < self.bufsize:
                buf.append(s)
                continue
            i = rng.randrange(len(buf))
            out, buf[i] = buf[i], s
            yield out
        rng.shuffle(buf)
        yield from buf


class _DecodeAugment:
    """Decode each sample and apply its random crop/flips; bad samples go to the handler."""

    def __init__(self, crop: int | None, flips: bool, seed: int, clock: _EpochClock, handler):
        self.crop, self.flips, self.seed, self.clock, self.handler = crop, flips, seed, clock, handler

    def __call__(self, src):
        epoch = self.clock.current
        seen: dict[str, int] = {}
        for s in src:
            try:
                name = f"{s.get('__url__', '<shard>')}:{s.get('__key__', '?')}" if isinstance(s, dict) else "<shard>"
                pair = decode_pair(s, name)
                n = seen.get(pair["key"], 0)
                seen[pair["key"]] = n + 1
                rng = numpy_rng(self.seed, pair["key"], f"augment/{epoch}/{n}")
                pair = bayer_crop_flip(pair, self.crop, rng, hflip=self.flips, vflip=self.flips)
            except Exception as e:  # noqa: BLE001 - the handler decides (raise, warn or skip)
                if self.handler(e):
                    continue
                break
            yield pair
