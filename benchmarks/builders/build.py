"""Build a synthetic RAW test set (DIV2K-Val, RealSR, DRealSR) from its public sRGB HR images.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rawsynth.errors import InputError
from rawsynth.io import decode_srgb, write_png16
from rawsynth.pipeline import CropBox, apply_crop, synthesize
from rawsynth.rng import numpy_rng

from ..bench import BUILT_DIRS, FORMAT
from ..errors import BenchmarkError, LayoutError
from ..files import sha256_file, versions, write_json, write_png8
from ..isp import develop_linear
from .layouts import Scan, SourceImage, compact, scan_layout
from .recipe import CropPolicy, Recipe

__all__ = ["ImagePlan", "BuildSummary", "plan_images", "iso_levels", "crop_box", "build_benchmark",
           "prepare_out_dir"]


@dataclass(frozen=True)
class ImagePlan:
    """What one image of the set gets: its source, position, Bayer pattern and ISO."""

    source: SourceImage
    index: int
    pattern: str
    iso: float


@dataclass
class BuildSummary:
    """Result of :func:`build_benchmark`."""

    out: Path
    images: int
    expected: int
    complete: bool
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    seconds: float = 0.0
    missing_runs: list[str] = field(default_factory=list)

    def line(self) -> str:
        s = f"{self.images} images ({self.expected} expected) in {self.seconds:.1f} s"
        if not self.complete:
            s += f"; INCOMPLETE, missing: {compact(self.missing_runs or self.missing, 10)}"
        if self.extra:
            s += f"; ignored {len(self.extra)} extra file(s): {compact(self.extra, 5)}"
        return s


def iso_levels(n: int, lo: float, hi: float, seed: int, name: str) -> list[float]:
    """``n`` ISOs log-spaced over ``[lo, hi]`` (bin midpoints, rounded to integers), in a seeded order."""
    if n <= 0:
        return []
    levels = [lo * (hi / lo) ** ((j + 0.5) / n) for j in range(n)]
    order = numpy_rng(seed, name, "iso-order").permutation(n)
    return [float(round(levels[j])) for j in order]


def plan_images(scan: Scan, recipe: Recipe) -> list[ImagePlan]:
    """Pattern and ISO of every image (see ``docs/benchmarks.md``)."""
    lo, hi = recipe.iso_bounds()
    isos = iso_levels(len(scan.images), lo, hi, recipe.seed, recipe.name)
    pats = recipe.patterns
    return [ImagePlan(src, i, pats[i % len(pats)].value, isos[i]) for i, src in enumerate(scan.images)]


def crop_box(h: int, w: int, recipe: Recipe, name: str) -> CropBox:
    """The recipe's crop of an ``h × w`` image."""
    m = recipe.multiple
    if recipe.crop["policy"] == CropPolicy.CENTER:
        s = recipe.crop["size"]
        if h < s or w < s:
            raise InputError(name, "too small", f"{w}x{h} < crop {s}x{s}",
                             hint="use a smaller --crop or `crop: {policy: full}` in a recipe file")
        return CropBox((h - s) // 4 * 2, (w - s) // 4 * 2, s, s, "center")
    hh, ww = h // m * m, w // m * m
    if hh < 2 * m or ww < 2 * m:
        raise InputError(name, "too small", f"{w}x{h}")
    return CropBox(0, 0, hh, ww, "full")


def prepare_out_dir(out: Path, overwrite: bool, built_dirs=BUILT_DIRS) -> None:
    """Make ``out`` ready for a build: new or empty, or (with ``overwrite``) a benchmark folder whose built
    files are removed. Scores (``leaderboard.json``, ``results/``) are left alone."""
    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"{out}: exists and is not a folder; choose another --out")
    if not out.exists():
        out.mkdir(parents=True)
        return
    entries = [e for e in out.iterdir() if not e.name.startswith(".")]
    if not entries:
        return
    ours = {"manifest.json", *built_dirs}
    if not overwrite:
        what = "a benchmark (manifest.json)" if (out / "manifest.json").exists() else "files"
        raise BenchmarkError(f"{out}: already holds {what}; pass --overwrite to rebuild it, or choose an empty --out")
    foreign = [e.name for e in entries if e.name not in ours | {"leaderboard.json", "results", "predictions"}]
    if not (out / "manifest.json").exists() and foreign:
        raise BenchmarkError(f"{out}: not empty and not a benchmark folder (holds {', '.join(sorted(foreign)[:5])}); "
                             "refusing to overwrite it: choose an empty --out")
    for name in ours:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _build_one(plan: ImagePlan, recipe: Recipe, out: Path, save_dng: bool) -> dict:
    src = plan.source
    try:
        data = src.path.read_bytes()
    except OSError as e:
        raise InputError(src.path, "unreadable", e.strerror or str(e)) from None
    image = decode_srgb(data, name=str(src.path)).image
    box = crop_box(image.shape[0], image.shape[1], recipe, str(src.path))
    config = recipe.synth_config(plan.pattern, plan.iso, recipe.crop.get("size", recipe.multiple))
    s = synthesize(apply_crop(image, box), src.key, recipe.seed, config,
                   source={"path": src.name, "sha256": hashlib.sha256(data).hexdigest()}, crop=box)
    gt_linear = np.round(s.hq_linear.astype(np.float64) * 65535.0).astype(np.uint16)
    meta = dict(s.meta, benchmark={"dataset": recipe.name, "index": plan.index})
    key = src.key
    write_png16(out / "raw" / f"{key}.png", s.raw_dn)
    write_json(out / "raw" / f"{key}.json", meta)
    if save_dng:
        from rawsynth.io import write_dng

        write_dng(out / "raw" / f"{key}.dng", s.raw_dn, s.pattern, s.sensor, s.isp, iso=s.noise.iso)
    write_png16(out / "gt_linear" / f"{key}.png", gt_linear)
    write_png8(out / "gt_srgb" / f"{key}.png", develop_linear(gt_linear, s.isp))
    write_png8(out / "lq_srgb" / f"{key}.png", s.lq_srgb)
    return {"key": key, "source": src.name, "source_sha256": meta["source"]["sha256"], "pattern": plan.pattern,
            "iso": plan.iso, "crop": box.to_dict()}


def build_benchmark(recipe: Recipe, src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                    allow_partial: bool = False, save_dng: bool | None = None, progress: bool = False) -> BuildSummary:
    """Build ``recipe``'s test set from the official download at ``src`` into ``out``.

    Args:
        recipe: a :class:`~benchmarks.builders.recipe.Recipe` (:func:`~benchmarks.builders.recipe.load_recipe`).
        src: the dataset folder (see :func:`~benchmarks.builders.layouts.find_root`).
        out: output folder: new, empty, or a benchmark to rebuild with ``overwrite``.
        overwrite: replace the benchmark in ``out`` (its scores are kept).
        allow_partial: build from the images found even when some expected ones are missing (the manifest
            records ``complete: false`` and the missing names).
        save_dng: also write ``raw/KEY.dng`` (default: the recipe's ``save_dng``).
        progress: tqdm progress bar.

    Raises:
        LayoutError: ``src`` is not the dataset's layout, or (without ``allow_partial``) files are missing.
        BenchmarkError: ``out`` cannot be used.
        InputError: a source image is unreadable or smaller than the crop.
    """
    t0 = time.perf_counter()
    scan = scan_layout(src, recipe)
    if not scan.images:
        raise LayoutError(f"none of the {recipe.expected_count} {recipe.title} images found under {scan.root}",
                          missing=scan.missing, path=src)
    if scan.missing and not allow_partial:
        raise LayoutError(f"{recipe.title} is incomplete: {len(scan.images)} of {recipe.expected_count} "
                                     f"images found; missing: {compact(scan.missing_runs)}. Re-download the set, or "
                                     "pass --allow-partial to build from what is there (marked incomplete)",
                          missing=scan.missing, path=scan.root)
    save_dng = recipe.save_dng if save_dng is None else bool(save_dng)
    out = Path(out)
    prepare_out_dir(out, overwrite)
    for d in BUILT_DIRS:
        (out / d).mkdir(exist_ok=True)
    plans = plan_images(scan, recipe)
    items = plans
    if progress:
        from tqdm import tqdm

        items = tqdm(plans, desc=f"build {recipe.name}", unit="img")
    images = [_build_one(p, recipe, out, save_dng) for p in items]
    files = {p.relative_to(out).as_posix(): sha256_file(p)
             for d in BUILT_DIRS for p in sorted((out / d).iterdir()) if p.is_file() and not p.name.startswith(".")}
    manifest = {
        "format": FORMAT, "dataset": recipe.name, "title": recipe.title, "has_gt": True,
        "recipe": recipe.to_dict(), "save_dng": save_dng,
        "source": {"root": os.fspath(src), "layout_root": scan.root.name, "layout": recipe.layout,
                   "layout_title": recipe.layout_title},
        "expected": recipe.expected_count, "complete": scan.complete, "missing": scan.missing, "extra": scan.extra,
        "versions": versions(), "images": images, "files": files,
    }
    write_json(out / "manifest.json", manifest)
    return BuildSummary(out, len(images), recipe.expected_count, scan.complete, scan.missing, scan.extra,
                        time.perf_counter() - t0, scan.missing_runs)


