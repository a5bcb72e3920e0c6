"""The stream plumbing shared by the training streams: shard specs (:func:`resolve_shards`), the resumable
position (:class:`StreamPosition`) and the epoch loop (:class:`EpochStream`). See ``docs/training.md``."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path



from ..errors import DataError


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
