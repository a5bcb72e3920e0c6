"""Recognise the official folder layouts of the source datasets and list the images of a test set.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from rawsynth.errors import ConfigError
from rawsynth.shards import check_key

from ..errors import LayoutError
from .recipe import Recipe

__all__ = ["SourceImage", "Scan", "find_root", "locate_group", "scan_layout", "compact"]


@dataclass(frozen=True, order=True)
class SourceImage:
    """One source image of a test set: ``key`` (file stem without the recipe's suffix), ``name`` (its path
    relative to the dataset root, recorded in metadata) and ``path`` (where it is read from)."""

    key: str
    name: str
    path: Path


@dataclass
class Scan:
    """What :func:`scan_layout` found.

    Attributes:
        root: the dataset root.
        images: the test set's images found, sorted by key.
        missing: expected files not found (relative names), or ``"FOLDER: N of M files"`` for counted groups.
        missing_runs: the same, consecutive names collapsed (``"DIV2K_valid_HR/0805.png … 0900.png (96 files)"``).
        extra: files in the group folders that are not part of the set (and not expected neighbours).
        expected: the recipe's image count.
    """

    root: Path
    images: list[SourceImage]
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    expected: int = 0
    missing_runs: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and len(self.images) == self.expected


def _visible_files(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    except OSError:
        return []


def _describe(folder: Path) -> str:
    """A short description of what a folder holds, for error messages."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        return f"cannot list it ({e.strerror})"
    dirs = [e.name + "/" for e in entries if e.is_dir() and not e.name.startswith(".")]
    files = [e.name for e in entries if e.is_file() and not e.name.startswith(".")]
    parts = []
    if dirs:
        parts.append(f"{len(dirs)} folder(s) ({', '.join(dirs[:5])}{', …' if len(dirs) > 5 else ''})")
    if files:
        parts.append(f"{len(files)} file(s) ({', '.join(files[:5])}{', …' if len(files) > 5 else ''})")
    return " and ".join(parts) if parts else "nothing"


def locate_group(root: Path, group) -> Path | None:
    """The folder under ``root`` holding ``group``: its ``folder``, else the first alias that exists (``"."``:
    ``root`` itself, when it directly holds a file of the group)."""
    for f in group.folders:
        if f in (".", ""):
            files = _visible_files(root)
            pats = group.globs or tuple(group.expected_names() or ())
            if any(fnmatch.fnmatch(n, p) for n in files for p in pats):
                return root
        elif (root / f).is_dir():
            return root / f
    return None


def find_root(src: str | os.PathLike, recipe: Recipe) -> Path:
    """The dataset root for ``src``: ``src`` itself, an ancestor when ``src`` is one of the group folders (or a
    leading part of one, e.g. ``RealSRVal_crop128`` of ``RealSRVal_crop128/test_HR``), or a direct sub-folder
    of ``src``; the first of these that holds a group folder (or alias).

    Raises:
        LayoutError: ``src`` is not a folder, or no candidate holds any of the recipe's folders.
    """
    src = Path(src)
    if not src.is_dir():
        what = "not a folder" if src.exists() else "no such folder"
        raise LayoutError(f"{what}; give --src the {recipe.title} download ({_expected_hint(recipe)})", path=src)
    candidates = [src]
    resolved = src.resolve()
    for g in recipe.groups:
        for folder in g.folders:
            parts = Path(folder).parts
            for k in range(len(parts), 0, -1):
                if len(resolved.parts) > k and resolved.parts[-k:] == parts[:k]:
                    candidates.append(Path(*resolved.parts[:-k]))
    candidates += sorted((Path(e.path) for e in os.scandir(src) if e.is_dir() and not e.name.startswith(".")),
                         key=lambda p: p.name)
    for root in candidates:
        if any(locate_group(root, g) is not None for g in recipe.groups):
            return root
    tops = " and ".join(dict.fromkeys(f"{g.folder.split('/')[0]}/" for g in recipe.groups))
    raise LayoutError(f"not the {recipe.title} layout ({recipe.layout_title}): expected "
                      f"{_expected_hint(recipe)} under it, found {_describe(src)}. Point --src at the folder "
                      f"that holds {tops} (or at {recipe.groups[0].folder} itself)" + _diagnose(src, recipe),
                      path=src)


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file header (PIL reads no pixels), ``None`` if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # noqa: BLE001 - any unreadable file simply does not match the layout
        return None


def _expected_hint(recipe: Recipe) -> str:
    out = []
    for g in recipe.groups:
        names = g.expected_names()
        size = f" of {g.size[1]}x{g.size[0]}" if g.size else ""
        out.append(f"{g.folder}/{names[0]} … {names[-1]}" if names else
                   f"{g.folder}/{'|'.join(g.globs)} ({g.count} files{size})")
    return "; ".join(out)


def _diagnose(src: Path, recipe: Recipe) -> str:
    """A hint when ``src`` directly holds images of the wrong kind (LR images, another split)."""
    files = _visible_files(src)
    if not files:
        return ""
    for g in recipe.groups:
        if any(fnmatch.fnmatch(f, pat) for f in files for pat in g.ignore):
            return (f". The files here are named like the LR neighbours {list(g.ignore)}: official LR images (then "
                    "point --src at the HR set), or StableSR's 512x512 HR test crops, which keep LR-style names "
                    f"(the bundled recipe {recipe.name}-stablesr reads those; `build {recipe.name}` tries it by "
                    "itself)")
    named = [n for g in recipe.groups for n in (g.expected_names() or [])]
    if named and files and not set(files) & set(named):
        return f". None of the expected names ({named[0]} … {named[-1]}) is here: is this another split?"
    return ""


def compact(names: list[str], n: int = 30) -> str:
    """``a, b, c, … (+k more)``."""
    return ", ".join(names[:n]) + (f", … (+{len(names) - n} more)" if len(names) > n else "")


def scan_layout(src: str | os.PathLike, recipe: Recipe) -> Scan:
    """List the test set's images under ``src``, with the expected files that are missing and the extra ones.

    Raises:
        LayoutError: not the layout at all (see :func:`find_root`), or two files give the same key.
    """
    root = find_root(src, recipe)
    images: dict[str, SourceImage] = {}
    missing: list[str] = []
    runs: list[str] = []
    extra: list[str] = []
    for g in recipe.groups:
        folder = locate_group(root, g) or root / g.folder
        rel = folder.relative_to(root).as_posix() if folder != root else "."
        files = _visible_files(folder)
        names = g.expected_names()
        if names is not None:
            members = [n for n in names if n in set(files)]
            absent = [n not in set(files) for n in names]
            missing += [f"{rel}/{n}" for n, a in zip(names, absent, strict=True) if a]
            runs += _runs(rel, names, absent)
            others = [f for f in files if f not in set(names)]
        else:
            members = [f for f in files if any(fnmatch.fnmatch(f, p) for p in g.globs)]
            others = [f for f in files if f not in set(members)]
            if g.size is not None:
                sizes = {f: _image_size(folder / f) for f in members}
                wrong = [f for f in members if sizes[f] != g.size]
                if wrong:
                    got = sizes[wrong[0]]
                    missing.append(f"{rel}: {len(wrong)} file(s) not {g.size[1]}x{g.size[0]} (e.g. {wrong[0]}: "
                                   f"{'unreadable' if got is None else f'{got[1]}x{got[0]}'})")
                    runs.append(missing[-1])
                    members = [f for f in members if f not in set(wrong)]
            if len(members) != g.count:
                missing.append(f"{rel}: {len(members)} {'|'.join(g.globs)} file(s) found, {g.count} expected")
                runs.append(missing[-1])
        extra += [f"{rel}/{f}" for f in others if not any(fnmatch.fnmatch(f, p) for p in g.ignore)]
        for n in members:
            stem = Path(n).stem
            key = stem[: -len(recipe.key_suffix)] if recipe.key_suffix and stem.endswith(recipe.key_suffix) else stem
            try:
                check_key(key)
            except ConfigError:
                raise LayoutError(f"file name gives an unusable image key {key!r} (keys are letters, "
                                              "digits, '_' and '-'); rename the file", path=folder / n) from None
            if key in images:
                raise LayoutError(f"gives the same image key {key!r} as {images[key].name}", path=folder / n)
            images[key] = SourceImage(key, f"{rel}/{n}" if rel != "." else f"{folder.name}/{n}", folder / n)
    return Scan(root, [images[k] for k in sorted(images)], missing, extra, recipe.expected_count, runs)


def _runs(folder: str, names: list[str], absent: list[bool]) -> list[str]:
    """Consecutive absent names collapsed into ``FOLDER/first … last (n files)``."""
    out, i = [], 0
    while i < len(names):
        if not absent[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(names) and absent[j + 1]:
            j += 1
        out.append(f"{folder}/{names[i]}" if i == j else f"{folder}/{names[i]} … {names[j]} ({j - i + 1} files)")
        i = j + 1
    return out
