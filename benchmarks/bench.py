"""A built benchmark folder: its manifest, its images, and ``verify``. See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from rawsynth.errors import InputError
from rawsynth.io import read_png16

from .errors import BenchmarkError
from .files import read_json, read_png8, sha256_file

__all__ = ["FORMAT", "BUILT_DIRS", "Bench", "VerifyReport", "verify_benchmark"]

#: ``manifest["format"]`` of benchmark folders.
FORMAT = "rawsynth-benchmark/1"
#: Folders the builders own (everything in them is listed in the manifest).
BUILT_DIRS = ("raw", "gt_linear", "gt_srgb", "lq_srgb")


@dataclass
class Bench:
    """A benchmark folder opened for reading (see ``docs/benchmarks.md`` for the layout)."""

    root: Path
    manifest: dict = field(repr=False)

    @classmethod
    def load(cls, root: str | os.PathLike) -> Bench:
        """Open ``root``; raises :class:`BenchmarkError` if it holds no (complete) benchmark."""
        root = Path(root)
        if not root.is_dir():
            raise BenchmarkError(f"{root}: no such benchmark folder; build one with `python -m benchmarks build`")
        if not (root / "manifest.json").is_file():
            raise BenchmarkError(f"{root}: no manifest.json, so not a (finished) benchmark; build it with "
                                 "`python -m benchmarks build NAME --src DIR --out DIR` (an interrupted build "
                                 "leaves no manifest: rerun it with --overwrite)")
        m = read_json(root / "manifest.json", "benchmark manifest")
        if m.get("format") != FORMAT or not isinstance(m.get("images"), list):
            raise BenchmarkError(f"{root / 'manifest.json'}: not a {FORMAT} manifest (format "
                                 f"{m.get('format')!r}); rebuild the benchmark with this version")
        return cls(root, m)

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def title(self) -> str:
        return self.manifest.get("title", self.dataset)

    @property
    def layout(self) -> str:
        """The source layout the set was built from: ``official``, ``stablesr-512`` (StableSR's 512x512 test
        crops), ``dnd``; ``official`` for manifests written before layouts were recorded."""
        if self.dataset == "dnd":
            return "dnd"
        return (self.manifest.get("source") or {}).get("layout", "official")

    @property
    def layout_title(self) -> str:
        """Human-readable :attr:`layout` (``"StableSR 512x512 test crops"``)."""
        if self.dataset == "dnd":
            return "DND boxes"
        return (self.manifest.get("source") or {}).get("layout_title", "official download")

    @property
    def has_gt(self) -> bool:
        return bool(self.manifest.get("has_gt", True))

    @cached_property
    def keys(self) -> list[str]:
        return [im["key"] for im in self.manifest["images"]]

    def path(self, kind: str, key: str) -> Path:
        """``kind`` ∈ ``raw``, ``meta``, ``dng``, ``gt_linear``, ``gt_srgb``, ``lq_srgb``."""
        if kind == "meta":
            return self.root / "raw" / f"{key}.json"
        if kind == "dng":
            return self.root / "raw" / f"{key}.dng"
        if kind not in BUILT_DIRS:
            raise ValueError(f"unknown kind {kind!r}")
        return self.root / kind / f"{key}.png"

    def meta(self, key: str) -> dict:
        return read_json(self.path("meta", key), "per-image metadata")

    def raw_dn(self, key: str) -> np.ndarray:
        return read_png16(self.path("raw", key))

    def gt_srgb(self, key: str) -> np.ndarray:
        if not self.has_gt:
            raise BenchmarkError(f"{self.root}: {self.title} has no ground truth (no-reference metrics only)")
        return read_png8(self.path("gt_srgb", key))


@dataclass
class VerifyReport:
    """Result of :func:`verify_benchmark`: ``ok``, files checked, and one line per problem."""

    root: Path
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        if self.ok:
            return f"{self.root}: OK, {self.checked} files match manifest.json"
        return "\n".join([f"{self.root}: {len(self.problems)} problem(s) ({self.checked} files checked):",
                          *(f"  {p}" for p in self.problems)])


def verify_benchmark(root: str | os.PathLike) -> VerifyReport:
    """Re-hash every file the manifest lists; report missing, changed and unlisted files in the built folders.

    Raises:
        BenchmarkError: ``root`` holds no manifest (nothing to verify against).
    """
    bench = Bench.load(root)
    report = VerifyReport(bench.root)
    files: dict = bench.manifest.get("files") or {}
    for rel, digest in sorted(files.items()):
        p = bench.root / rel
        if not p.is_file():
            report.problems.append(f"missing: {rel}")
            continue
        try:
            actual = sha256_file(p)
        except OSError as e:
            raise InputError(p, "unreadable", e.strerror or str(e)) from None
        report.checked += 1
        if actual != digest:
            report.problems.append(f"changed: {rel} (sha256 {actual[:12]}…, manifest {digest[:12]}…)")
    for d in BUILT_DIRS:
        folder = bench.root / d
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                rel = p.relative_to(bench.root).as_posix()
                if p.is_file() and rel not in files:
                    report.problems.append(f"not in manifest: {rel}")
    return report
