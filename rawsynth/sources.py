"""Where source photos come from: folders, files, list files, or the photos bundled with scikit-image.
See ``docs/generate.md``."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "BUNDLED_PHOTOS", "Source", "collect_sources", "bundled_sources",
           "source_name", "name_to_bytes", "is_escaped", "read_regular_file"]

#: What folders are searched for (case-insensitive); an image file named directly may have any extension.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pnm",
                              ".pgm"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
#: Colour photos that ship inside scikit-image's wheel (no download).
BUNDLED_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png")


@dataclass(frozen=True, order=True)
class Source:
    """One source image: ``name`` is what is sorted on and recorded in metadata (machine-independent),
    ``path`` where it is read from."""

    name: str
    path: str


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes of a name that is not valid UTF-8
        return False
    return True


def source_name(path: str) -> str:
    r"""The name recorded for ``path`` (a str as :func:`os.fsdecode` gives it): ``path`` itself when it is valid
    UTF-8, else an escaped form, valid UTF-8 and lossless: ``\\`` for a backslash and ``\xNN`` for each
    byte that is not part of valid UTF-8 (``caf\xe9.png``). Samples of such a source say so
    (``meta["source"]["path_escaped"] = true``); :func:`name_to_bytes` gives the file name's bytes back."""
    if _is_utf8(path):
        return path
    return os.fsencode(path).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def name_to_bytes(name: str, escaped: bool = False) -> bytes:
    """The file name bytes of a recorded source name (``escaped``: it was escaped by :func:`source_name`)."""
    return codecs.escape_decode(name.encode("utf-8"))[0] if escaped else name.encode("utf-8")


def is_escaped(src: Source) -> bool:
    """Whether ``src.name`` is the escaped form of a file name that is not valid UTF-8 (:func:`source_name`)."""
    return not _is_utf8(src.path)


def read_regular_file(path: str | os.PathLike, name: str | None = None) -> bytes:
    """The bytes of ``path``, refusing anything but a regular file without blocking (a FIFO, a device or a
    socket would hang or never end).

    Raises:
        InputError: reason ``"not a regular file"`` (with its kind) or ``"unreadable"`` (missing, no
            permission, an I/O error); named ``name`` (default: ``path``).
    """
    name = os.fspath(path) if name is None else name
    try:  # O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(name, "unreadable", e.strerror or str(e)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                    else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "a folder" if stat.S_ISDIR(mode) else "not a file")
            raise InputError(name, "not a regular file", kind, hint="only regular files are read as sources")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return f.read()
    except OSError as e:
        raise InputError(name, "unreadable", e.strerror or str(e)) from None
    finally:
        if fd >= 0:
            os.close(fd)


def bundled_sources() -> list[Source]:
    """The colour photos bundled with scikit-image, named ``skimage.data/<file>``."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    out = [Source(f"skimage.data/{f}", str(root / f)) for f in BUNDLED_PHOTOS if (root / f).is_file()]
    if not out:
        raise InputError(str(root), "no bundled photos", hint="reinstall scikit-image, or pass SRC folders")
    return out


def _read_list(path: Path) -> list[Source]:
    base = path.parent
    out = []
    # the list's bytes as the file system gives names: a name that is not valid UTF-8 survives
    for line in path.read_bytes().decode("utf-8", "surrogateescape").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line) if os.path.isabs(line) else base / line
            out.append(Source(source_name(os.path.normpath(str(p))), str(p)))
    return out


def collect_sources(srcs: Sequence[str | os.PathLike]) -> list[Source]:
    """Expand ``srcs`` into a sorted, de-duplicated list of images.

    Each entry may be a folder (searched recursively for entries with an image extension,
    :data:`IMAGE_EXTENSIONS`, case-insensitive), a text file list (``.txt``/``.lst``/``.list``: one path per
    line, relative to the list's folder, ``#`` comments), or an image file. An empty ``srcs`` means
    :func:`bundled_sources`. Names are the normalised paths as given (not made absolute), so the plan does not
    depend on the working directory's location; a name that is not valid UTF-8 is escaped (:func:`source_name`).
    Entries that are not regular files (a FIFO, a socket, a broken link) are kept: reading them fails at once
    and becomes a failure row of the run, so that nothing is skipped silently.

    Raises:
        InputError: a path that does not exist, or sources that hold no image.
    """
    if not srcs:
        return bundled_sources()
    found: dict[str, Source] = {}
    for s in srcs:
        p = Path(s)
        if p.is_dir():
            for f in p.rglob("*"):
                if f.suffix.lower() in IMAGE_EXTENSIONS and not f.is_dir():
                    name = source_name(os.path.normpath(str(f)))
                    found[name] = Source(name, str(f))
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            for src in _read_list(p):
                found[src.name] = src
        elif os.path.lexists(p) and not p.is_dir():  # an image file; anything else fails as a failure row
            name = source_name(os.path.normpath(str(p)))
            found[name] = Source(name, str(p))
        else:
            raise InputError(str(s), "no such file or folder", hint="check the SRC path")
    if not found:
        raise InputError(", ".join(map(str, srcs)), "no images found",
                         hint=f"SRC folders are searched for {sorted(IMAGE_EXTENSIONS)}")
    return sorted(found.values())
