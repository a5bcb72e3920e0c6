"""Tar members → samples for the shard reader, with each sample's place in the stream and member skipping.

:class:`TarSamples` replaces webdataset's ``tar_file_expander`` + ``group_by_keys`` stages with the same
grouping (members ``KEY.EXT`` with the same ``KEY`` in a row form one sample, ``EXT`` lower-cased; ``__*__``
members skipped; a sample never spans two shards) and two additions the resumable reader needs:

* every sample gets ``"__loc__": (k, o)``: ``k`` the shard's index in this reader's shard list of the pass,
  ``o`` the sample's index in that shard (counted over the samples the tar holds, read or not);
* a seek plan (:class:`SeekPlan`) names the samples to read; the members of the others are skipped without
  being read into Python objects or decoded (``tarfile`` streams past their data), and shards before the
  first needed one are not opened at all (:meth:`SeekPlan.needs_shard`, used by the opening stage).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterable, Iterator

from webdataset.tariterators import base_plus_ext

_SKIP_META = re.compile(r"__[^/]*__($|/)")

Loc = tuple[int, int]


class SeekPlan:
    """Which samples of a reader's pass to read when it resumes mid-pass (built from a saved reader state).

    A state is a JSON dict written by the reader itself (see :class:`rawsynth.data_stages.ShuffleSamples`)::

        {"after": [k, o],          # the last sample the reader had taken in; read everything after it
         "buf": [[k, o], ...],     # samples still waiting in the shuffle buffer, in buffer order (optional)
         "draws": t,               # random draws the shuffle buffer had made (optional)
         "flush": true}            # the input had ended: "buf" is what the final flush had left to give

    Args:
        state: the saved state of this reader (one DataLoader worker of one rank).
    """

    def __init__(self, state: dict):
        self.after: Loc = tuple(int(v) for v in state["after"])  # type: ignore[assignment]
        self.buf: list[Loc] = [tuple(int(v) for v in loc) for loc in state.get("buf", [])]  # type: ignore[misc]
        self.draws = int(state.get("draws", 0))
        self.flush = bool(state.get("flush", False))
        self._wanted = set(self.buf)
        self._shards = {k for k, _ in self.buf}

    def needs_shard(self, k: int) -> bool:
        """Whether shard ``k`` holds a sample to read (the others are skipped unopened): one of the buffered
        samples' shards, or a shard from :attr:`after`'s on (unless the input had ended)."""
        return k in self._shards or (not self.flush and k >= self.after[0])

    def wants(self, loc: Loc) -> bool:
        """Whether the sample at ``loc`` must be read (a buffered one, or one after :attr:`after`)."""
        return loc in self._wanted or (not self.flush and loc > self.after)


class TarSamples:
    """Pipeline stage: opened shards (``{"url", "stream", "shard": k, ...}``) → encoded samples with ``__loc__``.

    Args:
        handler: the error handler (``rawsynth.data.HANDLERS``): called with a member's or a shard's error;
            ``True`` goes on (with the next member, or the next shard), ``False`` stops.
        plan: a callable returning this pass's :class:`SeekPlan` (``None``: read everything).
    """

    def __init__(self, handler: Callable[[BaseException], bool], plan: Callable[[], SeekPlan | None]):
        self.handler, self.plan = handler, plan

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        plan = self.plan()
        for source in src:
            try:
                yield from self._shard(source, plan)
            except Exception as exn:  # noqa: BLE001 - the handler decides
                exn.args = exn.args + (source.get("url"),)
                if self.handler(exn):
                    continue
                break

    def _shard(self, source: dict, plan: SeekPlan | None) -> Iterator[dict]:
        url, k, local = source["url"], int(source.get("shard", 0)), source.get("local_path")
        if plan is not None and not plan.needs_shard(k):
            return
        current, keep, o = None, False, -1
        stream = tarfile.open(fileobj=source["stream"], mode="r|*")
        for info in stream:
            try:
                fname = info.name
                if not info.isreg() or fname is None:
                    continue
                if ("/" not in fname and fname.startswith("__") and fname.endswith("__")) or _SKIP_META.match(fname):
                    continue
                prefix, suffix = base_plus_ext(fname)
                if prefix is None:
                    continue
                suffix = suffix.lower()
                if current is None or prefix != current["__key__"]:
                    if current is not None and keep:
                        yield current
                    o += 1
                    keep = plan is None or plan.wants((k, o))
                    current = {"__key__": prefix, "__url__": url, "__loc__": (k, o)}
                    if local is not None:
                        current["__local_path__"] = local
                if suffix in current:
                    raise ValueError(f"{fname}: duplicate file name in tar file {suffix} {current.keys()}")
                if keep:
                    current[suffix] = stream.extractfile(info).read()
                stream.members = []
            except Exception as exn:  # noqa: BLE001 - the handler decides
                exn.args = exn.args + (url,)
                if self.handler(exn):
                    continue
                break
        if current is not None and keep:
            yield current
