"""Training pairs synthesised while training: where the data comes from (:func:`resolve_data`,
:class:`DataSource`) and :class:`OnTheFlyStream`. See ``docs/training.md``."""

from __future__ import annotations

import dataclasses

import torch

from rawsynth.data import bayer_crop_flip, collate
from rawsynth.errors import InputError, RawsynthError
from rawsynth.generate_config import GenerateConfig
from rawsynth.onthefly import OnTheFlySynth, SourceCrops, collate_crops
from rawsynth.pipeline import SynthConfig
from rawsynth.rng import numpy_rng
from rawsynth.sources import collect_sources

from ..config import DataConfig, load_yaml
from ..errors import ConfigError, DataError
from .stream_base import EpochStream, resolve_shards


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
