"""DND (Plötz & Roth, CVPR 2017): 50 real noisy RAW photos, read from the official ``.mat`` files into
benchmark images, one per box. See ``docs/benchmarks.md``."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rawsynth import __version__
from rawsynth._config import from_mapping, to_dict, with_path
from rawsynth.errors import ConfigError, InputError
from rawsynth.io import write_png16
from rawsynth.isp import ISPParams, rgb2cam_from_xyz2cam
from rawsynth.mns import Pattern, SensorParams, quantize

from .bench import FORMAT
from .builders.build import BuildSummary, prepare_out_dir
from .builders.layouts import compact
from .builders.recipe import load_recipe_dict
from .errors import LayoutError, MissingDependencyError
from .files import sha256_file, versions, write_json

__all__ = ["DndRecipe", "DndImageInfo", "read_dnd_info", "read_dnd_noisy", "find_dnd_root", "build_dnd"]

_CFA = {1: "R", 2: "G", 3: "B"}


@dataclass(frozen=True)
class DndRecipe:
    """``benchmarks/recipes/dnd.yaml``: image count, boxes per image, the 16-bit DN container."""

    name: str = "dnd"
    title: str = "DND"
    images: int = 50
    boxes_per_image: int = 20
    sensor: SensorParams = SensorParams(16, 4096, 65535)
    save_dng: bool = False

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = "dnd") -> DndRecipe:
        """The bundled ``dnd`` recipe or a YAML file (:func:`rawsynth._config.from_mapping`: unknown keys named)."""
        d, where = load_recipe_dict(name_or_path)
        try:
            return from_mapping(cls, d, what="DND recipe", convert=True)
        except ConfigError as e:
            raise with_path(e, where, fix=e.fix) from None

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclass(frozen=True)
class DndImageInfo:
    """The ``info.mat`` entry of one image.

    Attributes:
        boxes: ``(N, 4)`` int ``[top, left, bottom, right)`` (0-based, ``bottom``/``right`` exclusive).
        pattern: Bayer pattern of the full image's top-left 2×2 block.
        xyz2cam: ``(3, 3)`` ``ColorMatrix2``.
        as_shot_neutral: ``(3,)`` camera-neutral white.
        nlf: ``(a, b)``: noise variance ``a·x + b`` in normalised units.
        sigma_raw: ``(N, 2, 2)`` mean noise σ per box and Bayer position ``(row, col)``, or ``None``.
    """

    boxes: np.ndarray
    pattern: Pattern
    xyz2cam: np.ndarray
    as_shot_neutral: np.ndarray
    nlf: tuple[float, float]
    sigma_raw: np.ndarray | None

    def isp(self) -> ISPParams:
        """Forward-ISP parameters: CCM from ``ColorMatrix2``, white balance from ``AsShotNeutral``."""
        n = self.as_shot_neutral
        return ISPParams.from_rgb2cam(rgb2cam_from_xyz2cam(self.xyz2cam), 1.0, float(n[1] / n[0]),
                                      float(n[1] / n[2]))


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise MissingDependencyError(f"reading DND needs h5py ({e}); pip install h5py") from None
    return h5py


def _open(path: Path):
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(path, "unreadable", "no such file") from None
    except OSError as e:
        raise InputError(path, "not an HDF5 (MATLAB v7.3) file", str(e),
                         hint="DND ships v7.3 .mat files; re-download dnd_2017") from None


def _pattern(arr: np.ndarray, where: str) -> Pattern:
    codes = np.asarray(arr).T.reshape(2, 2)
    try:
        return Pattern("".join(_CFA[int(v)] for v in codes.ravel()))
    except (KeyError, ValueError):
        raise InputError(where, "unsupported CFA", f"pattern {codes.tolist()} is not a 2x2 Bayer layout") from None


def read_dnd_info(path: str | os.PathLike) -> list[DndImageInfo]:
    """Read ``info.mat`` (see ``docs/benchmarks.md``).

    Raises:
        InputError: not HDF5, or a field is missing or malformed.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            info = f["info"]
            refs = {k: np.asarray(info[k]).ravel() for k in ("boundingboxes", "nlf", "camera")}
            sigma = np.asarray(info["sigma_raw"]).ravel() if "sigma_raw" in info else None
            n = len(refs["boundingboxes"])
            out = []
            for i in range(n):
                boxes = np.asarray(f[refs["boundingboxes"][i]]).T.astype(np.int64)
                nlf = f[refs["nlf"][i]]
                cam = f[refs["camera"][i]]
                s = np.asarray(f[sigma[i]]).T if sigma is not None else None  # (box, row, col)
                out.append(DndImageInfo(
                    boxes=np.stack([boxes[:, 0] - 1, boxes[:, 1] - 1, boxes[:, 2], boxes[:, 3]], axis=1),
                    pattern=_pattern(cam["pattern"], f"{path}:info.camera[{i}].pattern"),
                    xyz2cam=np.asarray(cam["ColorMatrix2"], dtype=np.float64).ravel().reshape(3, 3),
                    as_shot_neutral=np.asarray(cam["AsShotNeutral"], dtype=np.float64).ravel(),
                    nlf=(float(np.asarray(nlf["a"]).ravel()[0]), float(np.asarray(nlf["b"]).ravel()[0])),
                    sigma_raw=None if s is None else s.astype(np.float64)))
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise InputError(path, "not a DND info.mat", f"{type(e).__name__}: {e}",
                             hint="use info.mat from the official dnd_2017 download") from None
    return out


def read_dnd_noisy(path: str | os.PathLike) -> np.ndarray:
    """``Inoisy`` of ``images_raw/NNNN.mat`` as ``(H, W)`` float32 (transposed from MATLAB's order)."""
    path = Path(path)
    with _open(path) as f:
        if "Inoisy" not in f:
            raise InputError(path, "not a DND RAW image", f"no 'Inoisy' dataset (has {sorted(f.keys())})",
                             hint="use images_raw/*.mat (not images_srgb) from dnd_2017")
        x = np.asarray(f["Inoisy"], dtype=np.float32).T
    if x.ndim != 2:
        raise InputError(path, "not a DND RAW image", f"Inoisy has shape {x.shape}, expected a 2-D mosaic")
    return np.ascontiguousarray(x)


def find_dnd_root(src: str | os.PathLike) -> Path:
    """The folder holding ``info.mat`` and ``images_raw/``: ``src``, its parent (``src`` = ``images_raw``), or a
    sub-folder such as ``dnd_2017``."""
    src = Path(src)
    if not src.is_dir():
        raise LayoutError("no such folder; give --src the DND download (dnd_2017/ with info.mat and images_raw/)",
                          path=src)
    candidates = [src, src.parent] + sorted(p for p in src.iterdir() if p.is_dir())
    for root in candidates:
        if (root / "info.mat").is_file() and (root / "images_raw").is_dir():
            return root
    hint = ""
    if (src / "images_srgb").is_dir() or src.name == "images_srgb":
        hint = " (images_srgb holds the sRGB version; the RAW benchmark needs images_raw)"
    raise LayoutError(f"not the DND layout: expected info.mat and images_raw/0001.mat … 0050.mat{hint}", path=src)


def build_dnd(src: str | os.PathLike, out: str | os.PathLike, *, recipe: DndRecipe | None = None,
              overwrite: bool = False, allow_partial: bool = False, save_dng: bool | None = None,
              progress: bool = False) -> BuildSummary:
    """Convert the DND download at ``src`` into a no-ground-truth RAW benchmark in ``out``."""
    t0 = time.perf_counter()
    recipe = recipe or DndRecipe.load()
    save_dng = recipe.save_dng if save_dng is None else bool(save_dng)
    root = find_dnd_root(src)
    infos = read_dnd_info(root / "info.mat")
    n = min(recipe.images, len(infos))
    names = [f"images_raw/{i:04d}.mat" for i in range(1, recipe.images + 1)]
    missing = [nm for nm in names if not (root / nm).is_file()]
    if len(infos) < recipe.images:
        missing.append(f"info.mat: {len(infos)} image entries, {recipe.images} expected")
    if missing and not allow_partial:
        raise LayoutError(f"DND is incomplete: missing {compact(missing)}. Re-download dnd_2017, or pass "
                          "--allow-partial", path=root, missing=missing)
    present = {p.name for p in (root / "images_raw").glob("*.mat")}
    extra = sorted(f"images_raw/{p}" for p in present - {Path(nm).name for nm in names})
    out = Path(out)
    prepare_out_dir(out, overwrite)
    (out / "raw").mkdir(exist_ok=True)
    sensor = recipe.sensor
    images = []
    todo = [i for i in range(1, n + 1) if (root / names[i - 1]).is_file()]
    if progress:
        from tqdm import tqdm

        todo = tqdm(todo, desc="build dnd", unit="img")
    for i in todo:
        info, rel = infos[i - 1], names[i - 1]
        mosaic = read_dnd_noisy(root / rel)
        digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        isp = info.isp()
        for b, (top, left, bottom, right) in enumerate(info.boxes[: recipe.boxes_per_image].tolist()):
            h, w = bottom - top, right - left
            if not (0 <= top < bottom <= mosaic.shape[0] and 0 <= left < right <= mosaic.shape[1]) or h % 2 or w % 2:
                raise InputError(root / "info.mat", "invalid bounding box",
                                 f"image {i} box {b + 1}: rows {top}:{bottom}, cols {left}:{right} in a "
                                 f"{mosaic.shape[0]}x{mosaic.shape[1]} mosaic")
            key = f"{i:04d}_{b + 1:02d}"
            crop = torch.from_numpy(mosaic[top:bottom, left:right].copy())[None, None]
            dn = quantize(crop, sensor)[0, 0].numpy()
            pattern = info.pattern.shifted(top, left)
            sig = info.sigma_raw[b] if info.sigma_raw is not None and b < len(info.sigma_raw) else None
            if sig is not None:  # already per box and crop phase: dnd_denoise.py pairs sigma_raw[xx, yy, box]
                sig = np.asarray(sig).tolist()  # with the crop's plane crop[yy::2, xx::2]
            meta = {
                "key": key, "mode": "dnd", "seed": None, "pattern": pattern.value, "sensor": sensor.to_dict(),
                "isp": isp.to_dict(),
                "noise": {"iso": None, "lambda_shot": info.nlf[0], "lambda_read": info.nlf[1], "sigma_raw": sig},
                "degradation": None, "source": {"path": rel, "sha256": digest},
                "crop": {"top": top, "left": left, "height": h, "width": w, "policy": "dnd-box"},
                "size": [h, w], "version": __version__,
                "dnd": {"image": i, "box": b + 1, "pattern": info.pattern.value,
                        "xyz2cam": info.xyz2cam.tolist(), "as_shot_neutral": info.as_shot_neutral.tolist()},
                "benchmark": {"dataset": recipe.name, "index": len(images)},
            }
            write_png16(out / "raw" / f"{key}.png", dn)
            write_json(out / "raw" / f"{key}.json", meta)
            if save_dng:
                from rawsynth.io import write_dng

                write_dng(out / "raw" / f"{key}.dng", dn, pattern, sensor, isp)
            images.append({"key": key, "source": rel, "source_sha256": digest, "pattern": pattern.value,
                           "box": [top, left, bottom, right]})
    files = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted((out / "raw").iterdir())
             if p.is_file() and not p.name.startswith(".")}
    expected = recipe.images * recipe.boxes_per_image
    complete = not missing and len(images) == expected
    write_json(out / "manifest.json", {
        "format": FORMAT, "dataset": recipe.name, "title": recipe.title, "has_gt": False,
        "recipe": recipe.to_dict(), "save_dng": save_dng, "source": {"root": os.fspath(src)},
        "expected": expected, "complete": complete, "missing": missing, "extra": extra,
        "versions": versions(), "images": images, "files": files})
    return BuildSummary(out, len(images), expected, complete, missing, extra, time.perf_counter() - t0)
