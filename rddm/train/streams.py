"""Training batches: an endless, resumable stream from shards (:class:`BatchStream`) or synthesised on the fly
(:class:`OnTheFlyStream`), both :class:`EpochStream` s; see ``docs/training.md``."""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from rawsynth.data import bayer_crop_flip, collate, make_loader
from rawsynth.errors import InputError, RawsynthError
from rawsynth.generate_config import GenerateConfig
from rawsynth.onthefly import OnTheFlySynth, SourceCrops, collate_crops
from rawsynth.pipeline import SynthConfig
from rawsynth.rng import numpy_rng
from rawsynth.sources import collect_sources

from ..config import DataConfig, load_yaml
from ..errors import CheckpointError, ConfigError, DataError
from .distributed import DistEnv


def resolve_shards(specs: Sequence[str] | str, where: str = "data.shards") -> list[str]:
    """Expand shard specs into a list of shard paths/URLs.

    Each spec may be a folder (its ``shard-*.tar``, sorted), a shard file, a brace pattern
    (``shard-{000000..000099}.tar``, expanded by the reader) or a URL.

    Raises:
        DataError: no specs, a folder without shards, or a path that does not exist.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [os.fspath(specs)]
    if not specs:
        raise DataError(f"no training shards given ({where} is empty)",
                        fix="pass --shards DIR (a `rawsynth generate` output folder) or set data.shards in the config")
    out: list[str] = []
    for s in specs:
        s = os.fspath(s)
        if "://" in s or "{" in s:
            out.append(s)
            continue
        p = Path(s)
        if p.is_dir():
            found = sorted(glob.glob(os.path.join(glob.escape(str(p)), "shard-*.tar")))
            if not found:
                raise DataError("no shard-*.tar in this folder", path=p,
                                fix="point at the --out folder of `rawsynth generate`")
            out += found
        elif p.is_file():
            out.append(str(p))
        else:
            raise DataError("no such shard file or folder", path=p, fix="check --shards / data.shards")
    return out


class StreamPosition(tuple):
    """A stream's place: ``(epoch, batches read in the epoch)`` (it compares and unpacks as that pair), plus, for
    the shard reader, :attr:`readers`: each reader's state after its last batch, so that a resumed stream seeks
    there instead of replaying the epoch (``None``: replay, or nothing read yet).

    Attributes:
        readers: ``{"last": reader index of the last batch, "workers": {"W": state}}`` (JSON-ready), or ``None``.
    """

    readers: dict | None

    def __new__(cls, epoch: int, index: int, readers: dict | None = None):
        self = super().__new__(cls, (int(epoch), int(index)))
        self.readers = readers
        return self

    def __reduce__(self):
        return (StreamPosition, (self[0], self[1], self.readers))


class EpochStream:
    """An endless stream of batches, epoch after epoch, with a resumable ``(epoch, batches read)`` position.

    A subclass opens an epoch's iterator at :attr:`index` (:meth:`_start_epoch`, setting ``self._it``) and turns
    each item into a batch (:meth:`_batch`, ``None`` to skip the item); :meth:`_epoch_ended` may raise when an
    epoch gives nothing.
    """

    def __init__(self, position: tuple[int, int] | None = None):
        self.epoch, self.index = (int(v) for v in position[:2]) if position is not None else (0, 0)
        self._it: Iterator | None = None

    @property
    def position(self) -> StreamPosition:
        """``(epoch, batches read in the epoch)`` (a :class:`StreamPosition`)."""
        return StreamPosition(self.epoch, self.index)

    def _start_epoch(self) -> None:
        raise NotImplementedError

    def _batch(self, item) -> dict | None:
        return item

    def _epoch_ended(self, empty: bool) -> None:
        """Called when an epoch's iterator is exhausted (``empty``: it gave no item)."""

    def next(self) -> dict:
        """The next batch (``rawsynth.data.collate`` format)."""
        self._empty_epochs = self._skipped = 0
        while True:
            if self._it is None:
                self._start_epoch()
            try:
                item = next(self._it)
            except StopIteration:
                self._epoch_ended(self.index == 0)
                self._it = None
                self.epoch, self.index = self.epoch + 1, 0
                continue
            self.index += 1
            batch = self._batch(item)
            if batch is not None:
                return batch


class BatchStream(EpochStream):
    """Endless batches over :func:`rawsynth.data.make_loader`, with a resumable position.

    The position holds each reader's state after its last batch (:class:`StreamPosition`; a reader is one
    DataLoader worker of one rank). Resuming seeks: each reader starts at its saved shard and skips, unread, the
    samples before its place in that shard (a shuffle buffer's waiting samples are read again from their shards),
    and the loader's round-robin resumes with the reader whose batch was due next: the batches are bitwise those
    of the uninterrupted run. A position without reader states (a checkpoint of an older version) is replayed
    batch by batch.

    Args:
        shards: shard paths (:func:`resolve_shards`).
        data: the :class:`~rddm.config.DataConfig` (crop, flips, shuffle, workers, handler, expected mode).
        batch_size: samples per batch (incomplete batches at the end of a worker's shards are dropped).
        seed: the run seed.
        position: ``(epoch, batches already read in that epoch)`` to continue from, a :class:`StreamPosition`
            to seek.
    """

    def __init__(self, shards: list[str], data: DataConfig, batch_size: int, seed: int,
                 position: tuple[int, int] | None = None):
        self.data = data
        self.batch_size = batch_size
        self.loader = make_loader(shards, batch_size, data.num_workers, drop_last=True, crop=data.crop,
                                  flips=data.flips, seed=seed, shuffle=data.shuffle, handler=data.handler,
                                  verify=data.verify, positions=True)
        super().__init__(position)
        readers = getattr(position, "readers", None)
        self._seek = readers if readers and self.index > 0 else None
        self._readers: dict[str, dict] = {}
        self._last: int | None = None

    @property
    def position(self) -> StreamPosition:
        """``(epoch, batches read)`` with the reader states (:class:`StreamPosition`)."""
        readers = {"last": self._last, "workers": dict(self._readers)} if self._last is not None else None
        return StreamPosition(self.epoch, self.index, readers)

    def _start_epoch(self) -> None:
        self._readers, self._last = {}, None
        seek, self._seek = self._seek, None
        if seek is not None:  # seek: every reader starts at its saved state
            workers = max(self.data.num_workers, 1)
            self._readers, self._last = dict(seek["workers"]), int(seek["last"])
            self.loader.dataset.set_epoch(self.epoch, seek={"rotation": (self._last + 1) % workers,
                                                            "workers": self._readers})
            self._it = iter(self.loader)
            return
        self.loader.dataset.set_epoch(self.epoch)
        self._it = iter(self.loader)
        for i in range(self.index):  # no reader states (an older checkpoint): replay to the saved position
            try:
                self._record(next(self._it))
            except StopIteration:
                raise CheckpointError(f"the data stream ended after {i} of the {self.index} batches read in epoch "
                                      f"{self.epoch} before the checkpoint: the shards changed",
                                      fix="resume with the shards the run was started with") from None

    def _epoch_ended(self, empty: bool) -> None:
        if empty:
            self._empty_epochs += 1
            if self._empty_epochs > 1:
                raise DataError(f"the shards of this process give no full batch of {self.batch_size} samples "
                                f"(crop {self.data.crop}; see the warnings above for skipped ones)",
                                fix="generate more samples (or larger ones), or lower batch_size / "
                                    "data.num_workers / the number of processes") from None

    def _record(self, batch: dict) -> dict:
        """Take the reader state off ``batch`` (``rawsynth.data.collate``'s ``__stream__``) and keep it."""
        state = batch.pop("__stream__", None)
        if state is not None:
            state = dict(state)
            self._last = int(state.pop("worker"))
            self._readers[str(self._last)] = state
        return batch

    def _batch(self, batch: dict) -> dict:
        self._check_mode(self._record(batch))
        return batch

    def _check_mode(self, batch: dict) -> None:
        want = self.data.mode
        if want == "any":
            return
        for m in batch["meta"]:
            if m.get("mode") != want:
                raise DataError(f"sample {m.get('key')} is a {m.get('mode')!r}-mode pair; this stage trains on "
                                f"{want!r}-mode pairs", fix=f"generate shards with `rawsynth generate --mode {want}`"
                                f", or set data.mode: any in the config")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A :class:`~rddm.config.DataConfig` with its inputs resolved (:func:`resolve_data`).

    Attributes:
        data: the config.
        shards: the shard paths (shard training), else empty.
        sources: the source photos, sorted (on-the-fly training), else empty.
        synth: the synthesis config (on-the-fly training), else ``None``.
    """

    data: DataConfig
    shards: tuple[str, ...] = ()
    sources: tuple = ()
    synth: object = None

    @property
    def onthefly(self) -> bool:
        return self.synth is not None


def _synth_config(data: DataConfig):
    """The :class:`rawsynth.pipeline.SynthConfig` of ``data.onthefly``: defaults < its YAML < the stage's mode and
    ``data.crop`` where the YAML leaves them open."""

    path = data.onthefly.synth_config
    d: dict = {}
    if path is not None:
        # the run keys (seed, shard_size, ...) of a `rawsynth config` YAML are rawsynth generate's: ignored here
        try:
            d = load_yaml(path)
        except ConfigError as e:
            raise ConfigError(f"cannot read the synthesis config ({e.message})", path=path,
                              fix="check data.onthefly.synth_config (a `rawsynth config` YAML)") from None
        d, _ = GenerateConfig.split(d)
    stage = "rddm" if data.mode == "any" else data.mode
    if d.get("mode", stage) != stage and data.mode != "any":
        raise ConfigError(f"the synthesis config makes {d['mode']!r}-mode pairs; this stage trains on "
                          f"{data.mode!r}-mode pairs", path=path, fix=f"set mode: {data.mode} there (or remove it)")
    d.setdefault("mode", stage)
    if data.crop is not None:
        d.setdefault("crop", data.crop)
    try:
        synth = SynthConfig.from_dict(d)
    except RawsynthError as e:
        raise ConfigError(f"invalid synthesis config ({e})", path=path,
                          fix="fix data.onthefly.synth_config (see `rawsynth config`)") from None
    if data.crop is not None and data.crop > synth.crop:
        raise ConfigError(f"data.crop ({data.crop}) is larger than the synthesised samples ({synth.crop} px)",
                          path=path, fix="lower data.crop or raise crop in the synthesis config")
    return synth


def resolve_data(data: DataConfig) -> DataSource:
    """Check and resolve where the training pairs come from, before anything is written.

    Raises:
        DataError: neither ``data.shards`` nor ``data.onthefly`` is set, missing shards, or sources that do not
            exist or hold no image.
        ConfigError: an unreadable or invalid synthesis config, a mode other than the stage's, or ``data.crop``
            larger than the synthesised samples.
    """
    otf = data.onthefly
    if otf is None:
        if not data.shards:
            raise DataError("no training shards given (data.shards is empty) and no on-the-fly synthesis "
                            "(data.onthefly)", fix="pass --shards DIR (a `rawsynth generate` output folder), set "
                                                   "data.shards in the config, or set data.onthefly.sources")
        return DataSource(data, shards=tuple(resolve_shards(data.shards)))

    try:
        sources = tuple(collect_sources(list(otf.sources)))
    except InputError as e:
        raise DataError(f"{e.reason}{f' ({e.detail})' if e.detail else ''}", path=e.path,
                        fix="check data.onthefly.sources (folders, image files or .txt/.lst/.list files)") from None
    return DataSource(data, sources=sources, synth=_synth_config(data))


class OnTheFlyStream(EpochStream):
    """Endless batches synthesised while training (:mod:`rawsynth.onthefly`), with a resumable position.

    The same interface as :class:`BatchStream`. An epoch is the samples ``rawsynth generate`` would plan for the
    sources (keys, crops and recipes from the synthesis seed, as the shards would record them), in plan order or,
    with ``data.shuffle > 0``, in a permutation drawn from ``(seed, epoch)``; rank ``r`` of ``W`` takes every
    ``W``-th sample of it from ``r`` (the same count on every rank: up to ``W − 1`` samples are left out), in
    batches of ``batch_size`` (an incomplete last batch is dropped). DataLoader workers decode the sources and cut
    the uint8 crops; :class:`rawsynth.onthefly.OnTheFlySynth` makes the pairs on ``device``; then each sample gets
    the shard reader's crop and flips (:func:`rawsynth.data.bayer_crop_flip` from
    ``numpy_rng(seed, key, f"augment/{epoch}/0")``, Bayer pattern updated). A batch is thus a function of
    (seed, synthesis seed, epoch, rank, world size, position) alone: resuming starts the loader at the saved batch,
    without replaying the ones before it. Samples whose source fails (``data.handler`` ``warn``/``skip``) are left
    out of their batch (a batch where all fail is skipped).

    Args:
        data: the :class:`~rddm.config.DataConfig` with ``onthefly`` set, or its :func:`resolve_data`.
        batch_size: samples per batch.
        seed: the run seed (order, crops and flips; also the synthesis seed unless ``data.onthefly.seed``).
        position: ``(epoch, batches already read in that epoch)`` to continue from.
        rank: this process's rank.
        world_size: the number of processes.
        device: where to synthesise; the batches are on it.

    Raises:
        ConfigError, DataError: as :func:`resolve_data`; ``data.onthefly.samples`` beyond the planned samples;
            or a share of the epoch too small for one batch.
    """

    def __init__(self, data: DataConfig | DataSource, batch_size: int, seed: int,
                 position: tuple[int, int] | None = None, *, rank: int = 0, world_size: int = 1,
                 device: str | torch.device = "cpu"):
        src = data if isinstance(data, DataSource) else resolve_data(data)
        if not src.onthefly:
            raise ConfigError("OnTheFlyStream needs data.onthefly (use BatchStream for shards)")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
        self.data, self.source, self.synth_config = src.data, src, src.synth
        otf = src.data.onthefly
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, int(seed), rank, world_size
        self.synth_seed = int(seed) if otf.seed is None else otf.seed
        self.device = torch.device(device)
        try:
            self.dataset = SourceCrops(list(src.sources), src.synth, seed=self.synth_seed, num_samples=otf.samples,
                                       handler=src.data.handler)
            self.synth = OnTheFlySynth(src.synth, self.synth_seed, self.device, jpeg=otf.jpeg)
        except ConfigError as e:
            if e.fix:
                raise
            raise ConfigError(e.message, path=e.path, fix="lower data.onthefly.samples, add sources or raise "
                                                          "crops_per_image in the synthesis config") from None
        self.per_rank = len(self.dataset) // world_size
        if self.per_rank < batch_size:
            raise DataError(f"the on-the-fly epoch ({len(self.dataset)} samples) gives each of the {world_size} "
                            f"process(es) {self.per_rank} samples: not one full batch of {batch_size}",
                            fix="add sources, raise crops_per_image or data.onthefly.samples, or lower batch_size /"
                                " the number of processes")
        super().__init__(position)

    @property
    def batches_per_epoch(self) -> int:
        return self.per_rank // self.batch_size

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's samples of ``epoch`` (indices into :attr:`dataset`, in reading order)."""
        import numpy as np

        n = len(self.dataset)
        order = np.arange(n)
        if self.data.shuffle > 0:
            order = numpy_rng(self.seed, "onthefly", f"order/{epoch}").permutation(n)
        return [int(i) for i in order[self.rank::self.world_size][:self.per_rank]]

    def _start_epoch(self) -> None:
        from torch.utils.data import DataLoader

        mine, b = self.epoch_indices(self.epoch), self.batch_size
        batches = [mine[i * b:(i + 1) * b] for i in range(self.index, self.batches_per_epoch)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.data.num_workers,
                            collate_fn=collate_crops, pin_memory=self.device.type == "cuda")
        self._it = iter(loader)

    def _batch(self, crops) -> dict | None:
        """The batch of ``crops`` (on the synthesis device), or ``None`` when all its samples failed."""
        if crops is None:  # every sample of the batch failed (warned about by the handler)
            self._skipped += 1
            if self._skipped > self.batches_per_epoch:
                raise DataError("no sample of a whole epoch could be synthesised (see the warnings above)",
                                fix="check data.onthefly.sources")
            return None
        return self._augment(self.synth(crops))

    def _augment(self, batch: dict) -> dict:
        flips = self.data.flips
        out = []
        for i, key in enumerate(batch["key"]):
            sample = {"key": key, "raw": batch["raw"][i], "hq": batch["hq"][i], "pattern": batch["pattern"][i],
                      "meta": batch["meta"][i]}
            rng = numpy_rng(self.seed, key, f"augment/{self.epoch}/0")  # the shard reader's draw for this key
            out.append(bayer_crop_flip(sample, self.data.crop, rng, hflip=flips, vflip=flips))
        return collate(out)


def make_stream(data: DataConfig | DataSource, batch_size: int, seed: int, position: tuple[int, int] | None = None,
                env: DistEnv | None = None) -> BatchStream | OnTheFlyStream:
    """The training stream of ``data``: :class:`BatchStream` over its shards, or :class:`OnTheFlyStream`.

    Args:
        data: the :class:`~rddm.config.DataConfig` or its :func:`resolve_data` (resolve early to fail before
            anything is written).
        batch_size: samples per batch per process.
        seed: the run seed.
        position: ``(epoch, batches read)`` to continue from (:meth:`Run.load_checkpoint`).
        env: this process (rank, world size, device; ``None``: one CPU process). On-the-fly pairs are
            synthesised on ``data.onthefly.device``, else on ``env.device``.
    """
    src = data if isinstance(data, DataSource) else resolve_data(data)
    if not src.onthefly:
        return BatchStream(list(src.shards), src.data, batch_size, seed, position)
    env = env if env is not None else DistEnv(0, 1, 0, torch.device("cpu"))
    device = src.data.onthefly.device
    if device is None:
        device = env.device
    elif device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"data.onthefly.device {device}: CUDA is not available on this machine",
                              fix="set data.onthefly.device: null (the training device) or cpu")
        if device == "cuda":
            device = env.device if env.device.type == "cuda" else torch.device("cuda", env.local_rank %
                                                                                 torch.cuda.device_count())
    return OnTheFlyStream(src, batch_size, seed, position, rank=env.rank, world_size=env.world_size, device=device)
