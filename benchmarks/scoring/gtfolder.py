"""A folder of ground-truth images used as a benchmark: ``python -m benchmarks score --gt DIR --pred DIR``.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import BenchmarkError
from ..files import read_png8
from .pairing import IMAGE_EXTENSIONS, candidate_keys

__all__ = ["GtFolder"]


@dataclass
class GtFolder:
    """Duck-type of :class:`benchmarks.bench.Bench` for scoring against a plain folder (no manifest, no
    leaderboard)."""

    root: Path
    files: dict[str, Path] = field(repr=False)

    @classmethod
    def load(cls, root: str | os.PathLike) -> GtFolder:
        """Open ``root``; raises :class:`BenchmarkError` when it is not a folder or holds no image."""
        root = Path(root)
        if not root.is_dir():
            raise BenchmarkError(f"{root}: no such ground-truth folder (--gt)")
        files = {Path(e.name).stem: Path(e.path) for e in sorted(os.scandir(root), key=lambda e: e.name)
                 if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS}
        if not files:
            raise BenchmarkError(f"{root}: no image file in the ground-truth folder (--gt); expected .png, .jpg, …")
        return cls(root, files)

    dataset = None
    has_gt = True
    layout = "folder"
    layout_title = "ground-truth folder"

    @property
    def title(self) -> str:
        return self.root.name

    @property
    def manifest(self) -> dict:
        return {"complete": True}

    @cached_property
    def keys(self) -> list[str]:
        return sorted(self.files)

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Other names a prediction may carry for each key: the key with the usual suffixes stripped
        (``Canon_001_LR4`` → ``Canon_001``), when that name belongs to one key only."""
        seen: dict[str, list[str]] = {}
        for k in self.keys:
            for c in candidate_keys(k)[1:]:
                seen.setdefault(c, []).append(k)
        return {c: ks[0] for c, ks in seen.items() if len(ks) == 1 and c not in self.files}

    def meta(self, key: str) -> dict:
        h, w = self.gt_srgb(key).shape[:2]
        return {"size": [h, w]}

    def gt_srgb(self, key: str) -> np.ndarray:
        return self._gt(key)

    def _gt(self, key: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = read_png8(self.files[key])
        return cache[key]
