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

Randomness is explicit. The crop and flips of a sample come from
``rawsynth.rng.numpy_rng(seed, key, f"augment/{epoch}/{n}")`` where ``n`` counts earlier occurrences of the
key in the same pass (always 0 without resampling), so they do not depend on the number of workers or the
order samples arrive in. Shard order (``shuffle > 0``) is a permutation drawn from ``(seed, epoch)`` alone,
identical on every rank and worker before the shards are split; the sample shuffle buffer and resampling
draw from ``(seed, epoch, rank, worker)``. The global numpy/torch/random generators are never used.
"""

from __future__ import annotations

import itertools
import os
import random
import warnings
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from .errors import ConfigError, ShapeError
from .mns.cfa import Pattern
from .mns.sensor import SensorParams, normalize
from .rng import derive_seed, numpy_rng
from .shards.fields import decode_sample
from .storage import is_url, open_binary

__all__ = ["HANDLERS", "decode_pair", "apply_crop_flip", "bayer_crop_flip", "RawPairDataset", "make_dataset",
           "collate", "make_loader"]


def _warn_and_continue(exn: BaseException) -> bool:
    """Warn about a bad sample or shard and go on (like ``webdataset.warn_and_continue``, without its sleep)."""
    warnings.warn(f"rawsynth.data: skipping bad data: {exn!r}", RuntimeWarning, stacklevel=2)
    return True


#: The ``handler`` names of :func:`make_dataset`: what to do with a corrupt shard or sample.
HANDLERS = {"raise": wds.reraise_exception, "warn": _warn_and_continue, "skip": wds.ignore_and_continue}


# ------------------------------------------------------------------------------------------------ samples


def decode_pair(sample: dict[str, bytes], name: str = "<sample>") -> dict:
    """Decode one shard sample into a training sample (tensors; see the module docstring).

    Args:
        sample: ``{"__key__": KEY, "raw.npy": bytes, "hq.npy": bytes, "meta.json": bytes, ...}`` (or the
            ``.png16`` / version-1 ``.png`` members).
        name: what to call the sample in error messages.

    Returns:
        ``{"key", "raw": (1, H, W) float32, "hq": (3, H, W) float32, "pattern": Pattern, "meta": dict}``.
        ``lq.png``/``gt.png``/``raw.dng`` are not decoded (use :func:`rawsynth.shards.decode_sample`).

    Raises:
        InputError: any reason of :func:`rawsynth.shards.decode_sample`.
    """
    d = decode_sample(sample, name)
    meta = d["meta"]
    sensor = SensorParams.from_dict(meta["sensor"])
    dn = torch.from_numpy(d["raw_dn"].astype(np.int32))[None, None]
    raw = normalize(dn, sensor, clip=False, dtype=torch.float32)[0]
    hq = torch.from_numpy(d["hq"]).permute(2, 0, 1).contiguous()
    return {"key": d["key"], "raw": raw, "hq": hq, "pattern": Pattern(meta["pattern"]), "meta": meta}


def _check_pair(sample: dict) -> tuple[str, int, int]:
    if not isinstance(sample, dict) or not {"raw", "hq", "pattern", "meta"} <= set(sample):
        raise ShapeError("expected a training sample dict with 'raw', 'hq', 'pattern' and 'meta' (from decode_pair)")
    key, raw, hq = sample.get("key", "<sample>"), sample["raw"], sample["hq"]
    if not isinstance(raw, torch.Tensor) or raw.ndim != 3 or raw.shape[0] != 1:
        raise ShapeError(f"sample {key}: raw must be a (1, H, W) tensor, got {getattr(raw, 'shape', type(raw))}")
    if not isinstance(hq, torch.Tensor) or hq.ndim != 3 or hq.shape[0] != 3 or hq.shape[1:] != raw.shape[1:]:
        raise ShapeError(f"sample {key}: hq must be a (3, H, W) tensor the size of raw {tuple(raw.shape)}, got "
                         f"{getattr(hq, 'shape', type(hq))}")
    return key, raw.shape[1], raw.shape[2]


def apply_crop_flip(sample: dict, top: int, left: int, height: int, width: int, hflip: bool = False,
                    vflip: bool = False) -> dict:
    """Crop then flip a training sample, updating its Bayer pattern (a pure function: no randomness).

    ``raw`` and ``hq`` get exactly the same crop and flips. The crop may start at any offset: the pattern
    becomes ``pattern.shifted(top, left)``; a horizontal flip then gives ``.hflipped(width)``, a vertical
    flip ``.vflipped(height)``. The box and flips are appended to ``meta["augment"]`` (a new list; the input
    sample and its meta are not modified).

    Args:
        sample: a training sample (:func:`decode_pair`).
        top: the crop's top row, ``>= 0``.
        left: the crop's left column, ``>= 0``.
        height: the crop's height, ``>= 1``, inside the sample.
        width: the crop's width, ``>= 1``, inside the sample.
        hflip: flip left–right after cropping.
        vflip: flip top–bottom after cropping.

    Returns:
        A new sample with contiguous ``(1, height, width)`` raw and ``(3, height, width)`` hq.

    Raises:
        ShapeError: not a training sample, or the box leaves the image.
    """
    key, h, w = _check_pair(sample)
    box = [int(v) for v in (top, left, height, width)]
    if not (box[0] >= 0 and box[1] >= 0 and box[2] >= 1 and box[3] >= 1 and box[0] + box[2] <= h
            and box[1] + box[3] <= w):
        raise ShapeError(f"sample {key}: crop box (top={top}, left={left}, {height}x{width}) is outside its "
                         f"{h}x{w} image")
    top, left, height, width = box
    pattern = Pattern(sample["pattern"]).shifted(top, left)
    raw = sample["raw"][:, top:top + height, left:left + width]
    hq = sample["hq"][:, top:top + height, left:left + width]
    if hflip:
        raw, hq, pattern = raw.flip(-1), hq.flip(-1), pattern.hflipped(width)
    if vflip:
        raw, hq, pattern = raw.flip(-2), hq.flip(-2), pattern.vflipped(height)
    meta = dict(sample["meta"])
    meta["augment"] = [*meta.get("augment", []), {"top": top, "left": left, "height": height, "width": width,
                                                   "hflip": bool(hflip), "vflip": bool(vflip)}]
    return {**sample, "raw": raw.contiguous(), "hq": hq.contiguous(), "pattern": pattern, "meta": meta}


def bayer_crop_flip(sample: dict, size: int | None, rng: np.random.Generator, hflip: bool = True,
                    vflip: bool = True) -> dict:
    """Random ``size × size`` crop at any offset, then random flips, with the Bayer pattern kept right.

    Draws, in this order from ``rng``: ``top ~ U{0..H−size}``, ``left ~ U{0..W−size}``, then (if enabled)
    a fair coin for the horizontal and one for the vertical flip; then calls :func:`apply_crop_flip`.

    Args:
        sample: a training sample (:func:`decode_pair`).
        size: crop side, ``1 <= size <= min(H, W)``; ``None`` keeps the whole image (flips only).
        rng: the generator to draw from (e.g. ``rawsynth.rng.numpy_rng(seed, key, "augment")``).
        hflip: allow horizontal flips.
        vflip: allow vertical flips.

    Raises:
        ShapeError: not a training sample, or ``size`` larger than the image.
        ConfigError: ``size`` not a positive int, ``rng`` not a ``numpy.random.Generator``.
    """
    key, h, w = _check_pair(sample)
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (e.g. rawsynth.rng.numpy_rng(seed, key)), got "
                          f"{type(rng).__name__}")
    if size is None:
        top, left, ch, cw = 0, 0, h, w
    else:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ConfigError(f"crop size must be a positive int or None, got {size!r}")
        if size > h or size > w:
            raise ShapeError(f"sample {key}: crop {size}x{size} is larger than its {h}x{w} image; use a smaller "
                             "crop or shards with larger samples")
        top, left, ch, cw = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size, size
    hf = bool(rng.integers(2)) if hflip else False
    vf = bool(rng.integers(2)) if vflip else False
    return apply_crop_flip(sample, top, left, ch, cw, hf, vf)


def collate(samples: Sequence[dict]) -> dict:
    """Stack training samples into a batch.

    Returns:
        ``{"raw": (B, 1, h, w), "hq": (B, 3, h, w), "pattern": list[Pattern], "meta": list[dict],
        "key": list[str]}``.

    Raises:
        ShapeError: an empty batch, or samples of different sizes (crop them to one size first).
    """
    samples = list(samples)
    if not samples:
        raise ShapeError("collate: empty batch")
    sizes = [_check_pair(s)[1:] for s in samples]
    if len(set(sizes)) > 1:
        detail = ", ".join(f"{s.get('key', '?')}: {hw[0]}x{hw[1]}" for s, hw in zip(samples, sizes))
        raise ShapeError(f"collate: samples differ in size ({detail}); pass crop=... to make_dataset")
    return {"raw": torch.stack([s["raw"] for s in samples]), "hq": torch.stack([s["hq"] for s in samples]),
            "pattern": [Pattern(s["pattern"]) for s in samples], "meta": [s["meta"] for s in samples],
            "key": [s.get("key") for s in samples]}


# ----------------------------------------------------------------------------------------- pipeline stages


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


# ---------------------------------------------------------------------------------------------- dataset


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
                 resampled: bool = False, verify: bool = True):
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
                         workersplitter=wds.split_by_worker if split_by_worker and not resampled else None,
                         empty_check=False)
        # webdataset's opener never closes its files; ours closes each shard once read
        self.pipeline = [_OpenShards(h) if isinstance(st, wds.cache.StreamingOpen) else st for st in self.pipeline]
        if verify:
            self.append(_VerifySamples(h))
        if shuffle > 0:
            self.append(_ShuffleSamples(shuffle, seed, self._clock))
        self.append(_DecodeAugment(crop, bool(flips), seed, self._clock, h))
        self.urls, self.crop, self.flips, self.seed, self.shuffle, self.handler_name = (
            urls, crop, bool(flips), seed, shuffle, handler)
        self.resampled, self.split_by_node, self.split_by_worker = bool(resampled), split_by_node, split_by_worker
        self.verify = bool(verify)

    def create_url_iterator(self, args):  # webdataset hook: our seeded shard list replaces its own
        self.append(self._source)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch index used to draw shard order, shuffling and crops of the next pass.

        Call it before each epoch when the loader uses worker processes without ``persistent_workers``
        (each epoch's workers start from a copy of this dataset); otherwise passes count up by themselves.
        """
        self._clock.base = _check_int("epoch", epoch, 0)
        self._clock.passes = 0


def make_dataset(urls: str | Sequence[str], *, crop: int | None = None, flips: bool = True, seed: int = 0,
                 shuffle: int = 0, split_by_node: bool = True, split_by_worker: bool = True, handler: str = "raise",
                 resampled: bool = False, epoch_size: int | None = None, verify: bool = True) -> RawPairDataset:
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

    Returns:
        A :class:`RawPairDataset` (a ``webdataset.WebDataset``); call ``.set_epoch(e)`` before each epoch.

    Raises:
        ConfigError: invalid argument, no shards, or a local shard that does not exist.
    """
    ds = RawPairDataset(urls, crop=crop, flips=flips, seed=seed, shuffle=shuffle, split_by_node=split_by_node,
                        split_by_worker=split_by_worker, handler=handler, resampled=resampled, verify=verify)
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
