"""What ``rddm restore`` reads: DNG and camera RAW files, rawsynth shards, and 16-bit PNG mosaics with JSON.
See ``docs/rddm.md``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rawsynth.errors import ConfigError as _RawsynthConfigError
from rawsynth.errors import InputError
from rawsynth.io.png16 import read_png16
from rawsynth.isp import ISPParams
from rawsynth.mns import Pattern, SensorParams
from rawsynth.shards import decode_sample, iter_shard

__all__ = ["RAW_EXTENSIONS", "KINDS", "RawInput", "InputSource", "InputList", "find_inputs", "read_source",
           "from_meta"]

#: File extensions (lower case) read as DNG / camera RAW through LibRaw when a folder is expanded. An explicitly
#: named file of any other extension is also tried as RAW (and rejected with "not a RAW file" if it is not).
RAW_EXTENSIONS = frozenset({
    ".3fr", ".ari", ".arw", ".bay", ".cr2", ".cr3", ".crw", ".dcr", ".dcs", ".dng", ".erf", ".fff", ".iiq",
    ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl",
    ".sr2", ".srf", ".srw", ".x3f"})
#: Input kinds, in the order of preference when one folder holds several files of the same stem.
KINDS = ("png16", "raw", "shard")


@dataclass(frozen=True, eq=False)
class RawInput:
    """One mosaic to restore.

    Attributes:
        name: output stem (``OUT/<name>.png``): the file stem, or the sample key for a shard sample.
        source: where it came from, for messages (``path`` or ``shard.tar:key``).
        raw: ``(H, W)`` float32 ``(DN − black)/(white − black)``, not clipped (as in training), ``H``, ``W`` even.
        pattern: the Bayer pattern of ``raw``'s top-left 2×2 block.
        isp: the file's PTP parameters (white balance, colour matrix, brightness), or ``None`` when the file has
            none (an unknown camera).
        notes: remarks made while reading (e.g. an odd size cropped).
        saturated: ``(H, W)`` bool samples at or above the white level (camera files only), else ``None``.
    """

    name: str
    source: str
    raw: np.ndarray
    pattern: Pattern
    isp: ISPParams | None
    notes: tuple[str, ...] = ()
    saturated: np.ndarray | None = None


@dataclass(frozen=True)
class InputSource:
    """One input file: ``path`` and its ``kind`` (:data:`KINDS`)."""

    path: Path
    kind: str


@dataclass
class InputList:
    """The expanded input arguments: :attr:`sources` to read, :attr:`errors` for arguments that are unusable as
    a whole (a missing path, an empty folder), :attr:`notes` on files left out."""

    sources: list[InputSource] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _kind(path: Path, explicit: bool) -> str | None:
    ext = path.suffix.lower()
    if ext == ".tar":
        return "shard"
    if ext == ".png" and path.with_suffix(".json").is_file():
        return "png16"
    if ext in RAW_EXTENSIONS:
        return "raw"
    if explicit:
        return "png16" if ext == ".png" else "raw"  # a lone PNG fails for its missing JSON; anything else in LibRaw
    return None


def _expand_folder(folder: Path, out: InputList) -> None:
    found: list[InputSource] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        kind = _kind(Path(entry.path), explicit=False)
        if kind is not None:
            found.append(InputSource(Path(entry.path), kind))
    if not found:
        out.errors.append(InputError(folder, "no inputs", detail="no DNG/camera RAW, shard (.tar) or PNG + JSON "
                                     "file in this folder", hint="pass RAW files or a folder holding them"))
        return
    by_stem: dict[str, list[InputSource]] = {}
    for s in found:
        if s.kind != "shard":
            by_stem.setdefault(s.path.stem, []).append(s)
    dropped = set()
    for stem, group in by_stem.items():
        if len(group) > 1:
            group = sorted(group, key=lambda s: (KINDS.index(s.kind), s.path.name))
            dropped.update(s.path for s in group[1:])
            out.notes.append(f"{folder}: {', '.join(s.path.name for s in group[1:])} skipped: {group[0].path.name} "
                             f"is the same image ({stem})")
    out.sources.extend(s for s in found if s.path not in dropped)


def find_inputs(paths: Sequence[str | os.PathLike]) -> InputList:
    """Expand the command line's inputs: files as given, folders to their supported files (sorted).

    A path that does not exist or a folder without inputs becomes an :class:`InputError` in
    :attr:`InputList.errors` (the other inputs are still processed).
    """
    out = InputList()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            _expand_folder(path, out)
        elif path.exists():
            out.sources.append(InputSource(path, _kind(path, explicit=True)))
        else:
            out.errors.append(InputError(path, "unreadable", detail="no such file or folder", hint="check the path"))
    return out


# --------------------------------------------------------------------------------------------- reading


def from_meta(name: str, source: str, raw_dn: np.ndarray, meta: dict, where: str) -> RawInput:
    """A :class:`RawInput` from a uint16 mosaic and rawsynth metadata (``pattern``, ``sensor``, ``isp``).

    Raises:
        InputError: reason ``"bad metadata"`` for a missing or invalid key (named), ``"corrupt file"`` for a
            mosaic that is not ``(H, W)`` with even sides.
    """
    if not isinstance(meta, dict):
        raise InputError(where, "bad metadata", detail=f"expected a JSON object, got {type(meta).__name__}")
    try:
        pattern = Pattern(meta["pattern"])
        sensor = SensorParams.from_dict(meta["sensor"])
        isp = ISPParams.from_dict(meta["isp"]) if meta.get("isp") is not None else None
    except KeyError as e:
        raise InputError(where, "bad metadata", detail=f"no {e.args[0]!r} key",
                         hint="the metadata needs 'pattern', 'sensor' and 'isp' as rawsynth writes them") from None
    except (ValueError, TypeError, _RawsynthConfigError) as e:
        raise InputError(where, "bad metadata", detail=str(e)) from None
    if raw_dn.ndim != 2 or raw_dn.shape[0] % 2 or raw_dn.shape[1] % 2 or min(raw_dn.shape) == 0:
        raise InputError(source, "corrupt file", detail=f"mosaic of shape {raw_dn.shape}; expected (H, W) with "
                         "even sides")
    raw = (raw_dn.astype(np.float32) - np.float32(sensor.black_level)) / np.float32(sensor.range)
    return RawInput(name, source, raw.astype(np.float32), pattern, isp)


def _read_png16(path: Path) -> RawInput:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise InputError(path, "missing metadata", detail=f"no {meta_path.name} next to it",
                         hint="a 16-bit PNG mosaic needs its KEY.json (pattern, sensor, isp), as "
                              "`python -m benchmarks build` writes them")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(meta_path, "bad metadata", detail=str(e)) from None
    return from_meta(path.stem, str(path), read_png16(path), meta, str(meta_path))


def _read_raw(path: Path) -> RawInput:
    from rawsynth.io.raw import read_raw

    img = read_raw(path)
    sat = img.saturated()
    return RawInput(path.stem, str(path), img.normalized(), img.pattern, img.isp, img.notes,
                    sat if sat.any() else None)


def _read_shard(path: Path) -> Iterator[RawInput | InputError]:
    it = iter_shard(path)
    while True:
        try:
            sample = next(it)
        except StopIteration:
            return
        except InputError as e:  # a truncated or corrupt shard: what was read so far is kept
            yield e
            return
        where = f"{path}:{sample.get('__key__')}"
        try:
            d = decode_sample(sample, where)
            yield from_meta(d["key"], where, d["raw_dn"], d["meta"], where)
        except InputError as e:
            yield e


def read_source(source: InputSource) -> Iterator[RawInput | InputError]:
    """The inputs of one file, in order: a :class:`RawInput` per image, or the :class:`InputError` (including
    :class:`~rawsynth.errors.UnsupportedCFAError`) that made an image unusable. A shard yields one item per
    sample; a shard cut short yields its readable samples, then the error."""
    if source.kind == "shard":
        yield from _read_shard(source.path)
        return
    try:
        if source.kind == "png16":
            yield _read_png16(source.path)
        elif source.kind == "raw":
            yield _read_raw(source.path)
        else:
            raise ValueError(f"unknown input kind {source.kind!r}")
    except InputError as e:
        yield e
