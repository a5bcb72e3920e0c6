"""Training batches: an endless, resumable stream from shards (:class:`BatchStream`) or synthesised on the fly
(:class:`OnTheFlyStream`), both :class:`EpochStream` s; see ``docs/training.md``."""

from __future__ import annotations

import torch

from rawsynth.data import make_loader

from ..config import DataConfig
from ..errors import CheckpointError, ConfigError, DataError
from .distributed import DistEnv
from .onthefly_stream import DataSource, OnTheFlyStream, _synth_config, resolve_data  # noqa: F401 (re-exported)
from .stream_base import EpochStream, StreamPosition, resolve_shards  # noqa: F401 (re-exported)

__all__ = ["resolve_shards", "StreamPosition", "EpochStream", "BatchStream", "DataSource", "resolve_data",
           "OnTheFlyStream", "make_stream"]


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
