"""Training reader for rawsynth shards: decode → Bayer-aware random crop and flips → batches.

A decoded training sample is a dict::

    {"key": str,                       # the sample key, e.g. "000012_3"
     "raw": (1, H, W) float32,         # (DN − black) / (white − black) with the sample's own sensor
     "hq": (3, H, W) float32,          # linear camera RGB in [0, 1] (hq.npy / 65535)
     "pattern": Pattern,               # Bayer pattern of ``raw`` (top-left 2×2 block, read row-wise)
     "meta": dict}                     # meta.json, plus "augment": [{top, left, height, width, hflip, vflip}]

``raw`` is **not clipped**: read noise takes dark pixels below the black level, so values slightly below 0
occur (and saturated pixels sit exactly at 1). Clip yourself if your model needs ``[0, 1]``.

Crops may start at any (also odd) offset and flips may be applied to any size: the pattern is updated
(:meth:`Pattern.shifted`, :meth:`Pattern.hflipped`, :meth:`Pattern.vflipped`) so that ``raw`` stays
``mosaic(hq, pattern)`` plus noise. Use an even crop size if you pack the mosaic into 2×2 planes.

Randomness is explicit. The crop and flips of a sample come from ``rawsynth.rng.numpy_rng(seed, key,
f"augment/{epoch}/{n}")`` where ``n`` counts earlier occurrences of the key in the same pass with
``resampled=True`` (and is 0 otherwise, also for equal keys in two shards), so they do not depend on the number
of workers or the order samples arrive in. Shard order (``shuffle > 0``) is a permutation drawn from ``(seed,
epoch)`` alone, identical on every rank and worker before the shards are split; the sample shuffle buffer and
resampling draw from ``(seed, epoch, rank, worker)``. The global numpy/torch/random generators are never used.

A pass can be resumed mid-way without replaying it: with ``positions=True`` every batch carries its reader's
state (``batch["__stream__"]``), and ``dataset.set_epoch(epoch, seek=...)`` starts the next pass there (see
:meth:`RawPairDataset.set_epoch`; :class:`rddm.train.streams.BatchStream` does this for training).

The code is split at its seams: :mod:`rawsynth.data_samples` (decode, crop/flip, collate),
:mod:`rawsynth.data_stages` (the pipeline stages); every name stays importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np
import webdataset as wds
from torch.utils.data import DataLoader

from .data_samples import apply_crop_flip, bayer_crop_flip, collate, decode_pair
from .data_stages import (HANDLERS, _DecodeAugment, _EpochClock, _OpenShards, _ShardList, _ShuffleSamples,
                          _SplitByWorker, _VerifySamples)
from .data_tar import TarSamples
from .errors import ConfigError

__all__ = ["HANDLERS", "decode_pair", "apply_crop_flip", "bayer_crop_flip", "RawPairDataset", "make_dataset",
           "collate", "make_loader"]



def _expand_urls(urls) -> list[str]:
    if isinstance(urls, (str, os.PathLike)):
        out = wds.shardlists.expand_urls(os.fspath(urls))
    elif isinstance(urls, Iterable):
        out = [os.fspath(u) for u in urls]
    else:
        raise ConfigError(f"urls must be a path, a brace pattern like 'out/shard-{{000000..000009}}.tar' or a "
                          f"list of them, got {type(urls).__name__}")
    if not out or not all(isinstance(u, str) and u for u in out):
        raise ConfigError(f"no shards in urls={urls!r}")
    for u in out:
        parsed = urlparse(u)
        if parsed.scheme in ("", "file") and not os.path.isfile(parsed.path):
            raise ConfigError(f"shard {u} does not exist; check the path (brace patterns like "
                              "'shard-{000000..000009}.tar' are expanded)")
    return out


def _check_int(name: str, v, low: int, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ConfigError(f"{name} must be an int >= {low}{' or None' if allow_none else ''}, got {v!r}")
    return int(v)


class RawPairDataset(wds.WebDataset):
    """A ``webdataset.WebDataset`` of decoded, augmented training samples (build it with :func:`make_dataset`).

    The pipeline: shard list (shuffled per epoch, or resampled) → ``split_by_node`` → ``split_by_worker`` →
    open → tar members → samples grouped by key → member checksums (``verify``) → shuffle buffer →
    :func:`decode_pair` + :func:`bayer_crop_flip`.
    """

    def __init__(self, urls, *, crop: int | None = None, flips: bool = True, seed: int = 0, shuffle: int = 0,
                 split_by_node: bool = True, split_by_worker: bool = True, handler: str = "raise",
                 resampled: bool = False, verify: bool = True, positions: bool = False):
        if handler not in HANDLERS:
            raise ConfigError(f"handler must be one of {sorted(HANDLERS)}, got {handler!r}")
        crop = _check_int("crop", crop, 1, allow_none=True)
        shuffle = _check_int("shuffle", shuffle, 0)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        seed = int(seed)
        urls = _expand_urls(urls)
        self._clock = _EpochClock()
        self._source = _ShardList(urls, seed, shuffle > 0, bool(resampled), self._clock)
        h = HANDLERS[handler]
        # empty_check=False: a worker whose samples are all bad yields nothing, and the caller says so in one line
        # (webdataset's check would raise "No samples found in dataset; perhaps you have fewer shards than workers")
        super().__init__(urls, handler=h, resampled=bool(resampled), shardshuffle=False, seed=seed,
                         nodesplitter=wds.split_by_node if split_by_node and not resampled else None,
                         workersplitter=_SplitByWorker(self._clock) if split_by_worker and not resampled else None,
                         empty_check=False)
        # webdataset's opener never closes its files; ours closes each shard once read. Its tar expander and
        # grouper become one stage that also records each sample's place and can skip members (resume)
        i = next(i for i, st in enumerate(self.pipeline) if isinstance(st, wds.cache.StreamingOpen))
        self.pipeline[i:i + 3] = [_OpenShards(h, self._clock), TarSamples(h, self._clock.plan)]
        track = bool(positions) and not resampled
        if verify:
            self.append(_VerifySamples(h))
        if shuffle > 0:
            self.append(_ShuffleSamples(shuffle, seed, self._clock, track))
        self.append(_DecodeAugment(crop, bool(flips), seed, self._clock, h, bool(resampled), track))
        self.urls, self.crop, self.flips, self.seed, self.shuffle, self.handler_name = (
            urls, crop, bool(flips), seed, shuffle, handler)
        self.resampled, self.split_by_node, self.split_by_worker = bool(resampled), split_by_node, split_by_worker
        self.verify, self.positions = bool(verify), track

    def create_url_iterator(self, args):  # webdataset hook: our seeded shard list replaces its own
        self.append(self._source)

    def set_epoch(self, epoch: int, seek: dict | None = None) -> None:
        """Set the epoch index used to draw shard order, shuffling and crops of the next pass.

        Call it before each epoch when the loader uses worker processes without ``persistent_workers``
        (each epoch's workers start from a copy of this dataset); otherwise passes count up by themselves.

        Args:
            epoch: the epoch index, ``>= 0``.
            seek: resume the next pass (only) mid-way: ``{"rotation": r, "workers": {"W": state}}`` with the
                reader states that batches of a ``positions=True`` dataset carry (``batch["__stream__"]``;
                :class:`rddm.train.streams.BatchStream` keeps them). Readers without a state start at the
                beginning; DataLoader worker ``w`` plays reader ``(w + r) % num_workers``. Shards before a
                reader's saved place are not opened, samples before it within its shard are skipped unread.
        """
        self._clock.base = _check_int("epoch", epoch, 0)
        self._clock.passes = 0
        self._clock.pending = seek


def make_dataset(urls: str | Sequence[str], *, crop: int | None = None, flips: bool = True, seed: int = 0,
                 shuffle: int = 0, split_by_node: bool = True, split_by_worker: bool = True, handler: str = "raise",
                 resampled: bool = False, epoch_size: int | None = None, verify: bool = True,
                 positions: bool = False) -> RawPairDataset:
    """A webdataset pipeline yielding training samples (see the module docstring) from rawsynth shards.

    Args:
        urls: a shard path, a brace pattern (``"out/shard-{000000..000031}.tar"``), ``::``-separated
            patterns, or a list of paths/URLs. Local shards must exist.
        crop: random ``crop × crop`` crop at any offset (:func:`bayer_crop_flip`); ``None`` keeps full samples.
        flips: random horizontal and vertical flips (pattern updated).
        seed: run seed for shard order, shuffling, resampling and crops.
        shuffle: ``0``: shards and samples in file order. ``> 0``: shard order is a new permutation each
            epoch (the same on every rank/worker, before splitting) and samples pass a shuffle buffer of this
            many (encoded) samples.
        split_by_node: give each distributed rank a disjoint share of the shards: rank ``r`` of ``n`` takes
            shards ``r, r+n, ...``. The rank and world size come from the ``RANK``/``WORLD_SIZE`` environment
            variables if set, else from ``torch.distributed`` when it is initialised (else one node). Each
            rank needs at least one shard per worker. ``False``: every rank reads every shard.
        split_by_worker: give each DataLoader worker a disjoint share of the (node's) shards, so that each
            sample is read once per epoch.
        handler: ``"raise"`` (an error stops iteration), ``"warn"`` (warn with a ``RuntimeWarning`` and skip
            the bad sample, or the rest of a bad shard) or ``"skip"`` (skip silently).
        resampled: draw shards with replacement, forever, from ``(seed, epoch, rank, worker)`` (no splitting
            needed: every rank and worker draws its own stream). Use with ``epoch_size``.
        epoch_size: samples per epoch **per worker process** (``webdataset``'s ``with_epoch``); the default
            ``None`` is one pass over the shards, or an endless stream when ``resampled``.
        verify: check every sample against the SHA-256 of its members recorded in its shard's stats sidecar
            (``shard-NNNNNN.stats.json``, written by ``rawsynth generate``); a mismatch is a corrupt sample
            (``InputError`` reason ``"checksum mismatch"``) handled by ``handler``. Local shards without
            recorded checksums, and remote URLs, are read unchecked. Cost: hashing the sample's bytes once
            (measured in ``docs/reliability.md``).
        positions: give every sample ``"__stream__"``, its reader's state after it (:func:`collate` keeps the
            batch's last one), so that a pass can be resumed there with ``set_epoch(epoch, seek=...)``
            instead of replayed (not with ``resampled``).

    Returns:
        A :class:`RawPairDataset` (a ``webdataset.WebDataset``); call ``.set_epoch(e)`` before each epoch.

    Raises:
        ConfigError: invalid argument, no shards, or a local shard that does not exist.
    """
    ds = RawPairDataset(urls, crop=crop, flips=flips, seed=seed, shuffle=shuffle, split_by_node=split_by_node,
                        split_by_worker=split_by_worker, handler=handler, resampled=resampled, verify=verify,
                        positions=positions)
    epoch_size = _check_int("epoch_size", epoch_size, 1, allow_none=True)
    if epoch_size is not None:
        ds = ds.with_epoch(epoch_size)
    return ds


def make_loader(urls: str | Sequence[str], batch_size: int, num_workers: int = 0, *, drop_last: bool = False,
                **dataset_kwargs: Any) -> DataLoader:
    """A ``torch.utils.data.DataLoader`` of collated batches (:func:`collate`) over :func:`make_dataset`.

    Args:
        urls: shards, as for :func:`make_dataset`.
        batch_size: samples per batch (batches are formed inside each worker).
        num_workers: DataLoader worker processes; each reads its own share of the shards, so without
            resampling there must be at least ``num_workers × world_size`` shards.
        drop_last: drop each worker's last, incomplete batch.
        dataset_kwargs: passed to :func:`make_dataset` (``crop`` is needed unless all samples share a size).

    Returns:
        The loader; its dataset is ``loader.dataset`` (call ``loader.dataset.set_epoch(e)`` each epoch).

    Raises:
        ConfigError: invalid argument or too few shards for the workers.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    num_workers = _check_int("num_workers", num_workers, 0)
    ds = make_dataset(urls, **dataset_kwargs)
    if not ds.resampled:
        _, world, _, _ = wds.utils.pytorch_worker_info()
        readers = (world if ds.split_by_node else 1) * (max(num_workers, 1) if ds.split_by_worker else 1)
        if len(ds.urls) < readers:
            raise ConfigError(f"{len(ds.urls)} shard(s) for {readers} readers (world size x workers): some would "
                              "get no shard; use fewer workers, more shards, or resampled=True")
    return DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, drop_last=drop_last)
