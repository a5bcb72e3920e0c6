"""Pair prediction files with a benchmark's images by name — never by sorted order. See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BenchmarkError, PairingError

__all__ = ["IMAGE_EXTENSIONS", "USUAL_SUFFIXES", "Pairing", "candidate_keys", "pair_predictions"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
#: Regexes (anchored at the end of the stem) of suffixes tools commonly add to output names.
USUAL_SUFFIXES = (r"_HR", r"_LR\d*", r"_x\d+", r"x\d+", r"_out", r"_output", r"_SR", r"_pred", r"_restored",
                  r"_rddm")
_USUAL = [re.compile(f"(?:{s})$", re.IGNORECASE) for s in USUAL_SUFFIXES]


def candidate_keys(stem: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Stems this file name may stand for, most literal first: the stem, then with the method suffixes and the
    usual suffixes stripped one at a time."""
    out = [stem]
    for s in suffixes:
        if s and stem.endswith(s) and len(stem) > len(s):
            out.append(stem[: -len(s)])
    frontier = list(out)
    while frontier:
        nxt = []
        for cand in frontier:
            for rx in _USUAL:
                m = rx.search(cand)
                if m and m.start() > 0:
                    c = cand[: m.start()]
                    if c not in out:
                        out.append(c)
                        nxt.append(c)
        frontier = nxt
    return out


HINT = ("name each prediction after its benchmark image (KEY.png; usual suffixes like _out are accepted, others "
        "via --suffix), remove files of other sets or of the wrong size, or pass --allow-missing for a partial run")


@dataclass
class Pairing:
    """``files[key]`` = the prediction of ``key``; ``missing`` keys without one; ``extra`` image files matching no
    key; ``duplicates`` keys matched by several files; ``ignored`` non-image files."""

    pred_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def error(self, allow_missing: bool = False, wrong_size=None, unreadable=None) -> PairingError | None:
        """The one error listing every problem (``None`` if there is none)."""
        missing = [] if allow_missing else self.missing
        if missing or self.extra or self.duplicates or wrong_size or unreadable:
            return PairingError(self.pred_dir, missing, self.extra, self.duplicates, wrong_size, unreadable, HINT)
        return None


def pair_predictions(pred_dir: str | os.PathLike, keys: list[str], suffixes: tuple[str, ...] = (),
                     allow_missing: bool = False, check: bool = True, aliases: dict[str, str] | None = None) -> Pairing:
    """Match the files of ``pred_dir`` (not recursive) with ``keys`` (or with ``aliases``: other names of a key,
    tried after the keys themselves).

    Raises:
        BenchmarkError: ``pred_dir`` is not a folder.
        PairingError: (with ``check``) extra files (matching no key), duplicates (two files for one key) or,
            unless ``allow_missing``, missing keys — all listed in one message. Sizes are checked by
            :func:`benchmarks.scoring.score.score`, which reports them in the same error.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise BenchmarkError(f"{pred_dir}: no such prediction folder")
    keyset = set(keys)
    by_key: dict[str, list[Path]] = {}
    extra, ignored = [], []
    for entry in sorted(os.scandir(pred_dir), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        p = Path(entry.path)
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append(p.name)
            continue
        cands = candidate_keys(p.stem, suffixes)
        key = next((c for c in cands if c in keyset), None)
        if key is None and aliases:
            key = next((aliases[c] for c in cands if c in aliases), None)
        if key is None:
            extra.append(p.name)
        else:
            by_key.setdefault(key, []).append(p)
    files = {k: ps[0] for k, ps in by_key.items() if len(ps) == 1}
    duplicates = {k: [p.name for p in ps] for k, ps in by_key.items() if len(ps) > 1}
    missing = [k for k in keys if k not in files and k not in duplicates]
    pairing = Pairing(pred_dir, {k: files[k] for k in keys if k in files}, missing, extra, duplicates, ignored)
    if check and (err := pairing.error(allow_missing)):
        raise err
    return pairing
