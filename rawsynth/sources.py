"""Where source photos come from: folders, files, list files, or the photos bundled with scikit-image."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "BUNDLED_PHOTOS", "Source", "collect_sources", "bundled_sources"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".ppm", ".pnm", ".pgm"})
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
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line) if os.path.isabs(line) else base / line
            out.append(Source(os.path.normpath(str(p)), str(p)))
    return out


def collect_sources(srcs: Sequence[str | os.PathLike]) -> list[Source]:
    """Expand ``srcs`` into a sorted, de-duplicated list of images.

    Each entry may be a folder (searched recursively for files with an image extension, case-insensitive),
    a text file list (``.txt``/``.lst``/``.list``: one path per line, relative to the list's folder, ``#``
    comments), or an image file. An empty ``srcs`` means :func:`bundled_sources`. Names are the normalised
    paths as given (not made absolute), so the plan does not depend on the working directory's location.

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
                if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                    name = os.path.normpath(str(f))
                    found[name] = Source(name, str(f))
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            for src in _read_list(p):
                found[src.name] = src
        elif p.is_file():
            name = os.path.normpath(str(p))
            found[name] = Source(name, str(p))
        else:
            raise InputError(str(s), "no such file or folder", hint="check the SRC path")
    if not found:
        raise InputError(", ".join(map(str, srcs)), "no images found",
                         hint=f"SRC folders are searched for {sorted(IMAGE_EXTENSIONS)}")
    return sorted(found.values())
