"""fsspec URLs for datasets (``rawsynth generate --out s3://...`` and the readers): shards staged locally and
published atomically. See ``docs/format.md``."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

from .errors import ConfigError

__all__ = ["is_url", "open_binary", "url_to_fs", "RemoteOut"]


def is_url(path) -> bool:
    """Whether ``path`` is an fsspec URL (a scheme other than ``file``; Windows drive letters are not)."""
    if not isinstance(path, str):
        return False
    scheme = urlparse(path).scheme
    return len(scheme) > 1 and scheme != "file" and "://" in path


def url_to_fs(url: str):
    """``(filesystem, path)`` of an fsspec URL; a :class:`ConfigError` naming the package when the protocol's
    implementation is not installed."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"cannot open {url}: {e}; install the fsspec implementation of "
                          f"'{urlparse(url).scheme}://' (e.g. s3fs for s3://, gcsfs for gs://)") from None


def open_binary(path):
    """Open a local path or an fsspec URL for binary reading."""
    if is_url(path):
        fs, p = url_to_fs(path)
        return fs.open(p, "rb")
    return open(path, "rb")


def sha256_url(fs, path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class RemoteOut:
    """The remote side of a ``generate`` run into ``url`` (see the module docstring)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _put(self, local: Path, name: str) -> None:
        """Upload to a temporary key, then move it onto ``name`` (object stores: copy + delete)."""
        tmp = self._key(f"{name}.{uuid.uuid4().hex[:12]}.tmp")
        self.fs.put_file(os.fspath(local), tmp)
        try:
            self.fs.mv(tmp, self._key(name))
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def pull(self, staging: Path, overwrite: bool) -> None:
        """Prepare ``staging`` (an empty local folder) from the remote: with ``overwrite`` delete the remote
        dataset; else download its manifest and every shard that has stats (``generate`` then checks them as
        it checks a local folder), and remove leftover temporary keys."""
        if not self.fs.exists(self.root):
            return
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        ours = [n for n in names if n.startswith("shard-") or n == "manifest.json" or n.endswith(".tmp")]
        if overwrite:
            for n in ours:
                self.fs.rm(self._key(n))
            return
        for n in ours:
            if n.endswith(".tmp"):
                self.fs.rm(self._key(n))
            elif n == "manifest.json" or n.endswith(".stats.json"):
                self.fs.get_file(self._key(n), os.fspath(staging / n))
                tar = n[:-len(".stats.json")] + ".tar"
                if n != "manifest.json" and tar in names:
                    self.fs.get_file(self._key(tar), os.fspath(staging / tar))
            elif n.endswith(".tar") and n[:-4] + ".stats.json" not in names:
                self.fs.get_file(self._key(n), os.fspath(staging / n))  # generate reports it like a local one

    def push_shard(self, staging: Path, name: str) -> None:
        """Publish shard ``name`` (``shard-NNNNNN``): its tar first, its stats last."""
        self._put(staging / f"{name}.tar", f"{name}.tar")
        self._put(staging / f"{name}.stats.json", f"{name}.stats.json")

    def push_manifest(self, staging: Path) -> None:
        if (staging / "manifest.json").exists():
            self._put(staging / "manifest.json", "manifest.json")
