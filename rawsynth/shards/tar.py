"""Deterministic, atomic webdataset tar shards (:func:`write_shard`, :func:`iter_shard`). See ``docs/format.md``."""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass

from ..errors import ConfigError, InputError
from .fields import check_key

__all__ = ["ShardFile", "write_shard", "iter_shard", "sha256_file", "FIELD_RE", "MTIME", "FILE_MODE", "OWNER"]

#: A valid field (member suffix): lower-case dotted words, e.g. ``raw.png`` (webdataset lower-cases suffixes).
FIELD_RE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
#: Modification time stored for every member.
MTIME = 0
#: Permission bits stored for every member.
FILE_MODE = 0o644
#: User and group names stored for every member (numeric ids are 0).
OWNER = "rawsynth"

_USTAR_NAME_MAX = 100
_BLOCK = 512


@dataclass(frozen=True)
class ShardFile:
    """A shard written by :func:`write_shard`.

    Attributes:
        path: the shard's final path.
        count: number of samples in it.
        bytes: size of the tar file in bytes.
        sha256: hex SHA-256 of the tar file.
    """

    path: str
    count: int
    bytes: int
    sha256: str


class _HashingWriter:
    """Write-only file wrapper counting and hashing what passes through."""

    def __init__(self, f):
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._f.write(data)


def _check_sample(sample) -> dict[str, bytes]:
    if not isinstance(sample, dict) or "__key__" not in sample:
        raise ConfigError(f"a shard sample must be a dict with a '__key__' (from encode_sample), got "
                          f"{type(sample).__name__}")
    key = check_key(sample["__key__"])
    out = {"__key__": key}
    for field, value in sample.items():
        if field.startswith("__"):
            continue  # webdataset metadata (__key__, __url__, ...) is not written
        if not isinstance(field, str) or not FIELD_RE.fullmatch(field):
            raise ConfigError(f"sample {key}: invalid field name {field!r}; use lower-case dotted names like "
                              "'raw.png' (webdataset lower-cases member suffixes)")
        if len(key) + 1 + len(field) > _USTAR_NAME_MAX:
            raise ConfigError(f"sample {key}: member name {key}.{field} is longer than {_USTAR_NAME_MAX} characters")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ConfigError(f"sample {key}: field {field} must be bytes, got {type(value).__name__}; "
                              "encode samples with rawsynth.shards.encode_sample")
        out[field] = bytes(value)
    if len(out) == 1:
        raise ConfigError(f"sample {key} has no fields")
    return out


def write_shard(path: str | os.PathLike, samples: Iterable[dict[str, bytes]]) -> ShardFile:
    """Write ``samples`` to the tar shard ``path``, deterministically and atomically.

    Args:
        path: the shard's final path, e.g. ``out/shard-000000.tar``; its folder must exist. An existing
            file there is replaced.
        samples: dicts ``{"__key__": KEY, FIELD: bytes, ...}`` (e.g. from :func:`encode_sample`); keys must
            be unique. They are collected first (the shard is held in memory once) and written in ascending
            key order (string order: zero-pad numbers in keys). Fields starting with ``__`` are dropped.
            May be empty (a valid tar with no members).

    Returns:
        :class:`ShardFile` ``(path, count, bytes, sha256)``.

    Raises:
        ConfigError: a sample is not a dict of bytes with a valid key and field names, or keys repeat.
        OSError: writing failed (e.g. a full disk). Whatever happens (also an exception raised by
            ``samples`` itself), the temporary ``PATH.<pid>.<random>.tmp`` is removed and nothing new appears
            under ``path``.
    """
    import webdataset as wds

    path = os.fspath(path)
    # a unique temporary name: two writers of the same shard (a task still running after its client died and its
    # resumed copy) never share one temporary file, so the rename only ever publishes a complete tar
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    todo = sorted((_check_sample(s) for s in samples), key=lambda s: s["__key__"])
    for a, b in zip(todo, todo[1:]):
        if a["__key__"] == b["__key__"]:
            raise ConfigError(f"{path}: sample key {a['__key__']!r} appears twice; keys must be unique in a shard")
    try:
        with open(tmp, "wb") as f:
            sink = _HashingWriter(f)
            writer = wds.TarWriter(sink, user=OWNER, group=OWNER, mode=FILE_MODE, compress=False, encoder=False,
                                   mtime=MTIME)
            try:
                for sample in todo:
                    writer.write(sample)
            finally:
                writer.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return ShardFile(path, len(todo), sink.size, sink.sha.hexdigest())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in ``chunk``-byte pieces); ``path`` may be an fsspec URL."""
    from ..storage import open_binary

    h = hashlib.sha256()
    with open_binary(os.fspath(path)) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_shard(path: str | os.PathLike) -> Iterator[dict[str, bytes]]:
    """Read the samples of a tar shard back, in file order. ``path`` may be an fsspec URL (``s3://...``).

    Members are named ``KEY.FIELD``; the key is the name up to the first dot. A sample's members must be
    contiguous (as :func:`write_shard` and webdataset write them).

    Yields:
        ``{"__key__": KEY, FIELD: bytes, ...}`` (decode with :func:`rawsynth.shards.decode_sample`).

    Raises:
        InputError: reason ``"unreadable"`` (missing file, I/O error), ``"truncated"`` (the file ends before
            the end-of-archive marker, also between two members) or ``"corrupt shard"`` (not a tar,
            compressed, a member that is not a regular file, a name without a dot or with a ``/``, a field
            repeated in a sample, or a sample whose members are not contiguous).
    """
    from ..storage import open_binary

    path = os.fspath(path)
    try:
        f = open_binary(path)
    except OSError as e:
        raise InputError(path, "unreadable", detail=e.strerror or str(e)) from None
    with f:
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except tarfile.ReadError as e:
            raise InputError(path, "corrupt shard", detail=f"not an uncompressed tar ({e})",
                             hint="shards are plain (uncompressed) tar files") from None
        seen: set[str] = set()
        current: dict[str, bytes] | None = None
        try:
            for m in tf:
                name = m.name
                if not m.isreg():
                    raise InputError(path, "corrupt shard", detail=f"member {name!r} is not a regular file")
                key, dot, field = name.partition(".")
                if not dot or not key or not field or "/" in name:
                    raise InputError(path, "corrupt shard", detail=f"member {name!r} is not named KEY.FIELD")
                if current is None or current["__key__"] != key:
                    if key in seen:
                        raise InputError(path, "corrupt shard", detail=f"the members of sample {key!r} are not "
                                         "contiguous")
                    if current is not None:
                        yield current  # complete: before this member's data, which may be cut short
                    seen.add(key)
                    current = {"__key__": key}
                data = tf.extractfile(m).read()
                if len(data) != m.size:
                    raise InputError(path, "truncated", detail=f"member {name!r} is cut short")
                if field in current:
                    raise InputError(path, "corrupt shard", detail=f"member {name!r} appears twice")
                current[field] = data
            end = tf.offset
        except tarfile.ReadError as e:
            raise InputError(path, "truncated", detail=str(e)) from None
        f.seek(end)
        if f.read(_BLOCK) != bytes(_BLOCK):
            raise InputError(path, "truncated", detail=f"no end-of-archive marker at byte {end}",
                             hint="the shard was cut short; re-generate it")
        if current is not None:
            yield current
