"""Write a DND submission: per-box ``.mat`` files and the bundles the DND server evaluates.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rawsynth.errors import ConfigError, InputError
from rawsynth.io import atomic_output

from .bench import Bench
from .errors import BenchmarkError, PairingError
from .scoring.pairing import HINT, IMAGE_EXTENSIONS, candidate_keys

__all__ = ["TRACKS", "EVAL_VERSION", "SubmitSummary", "load_box_prediction", "write_submission", "bundle",
           "check_bundle"]

TRACKS = ("raw", "srgb")
#: ``eval_version`` of the official bundling script.
EVAL_VERSION = "1.0"
_EXTS = IMAGE_EXTENSIONS | {".npy"}


@dataclass
class SubmitSummary:
    """What :func:`write_submission` wrote."""

    out: Path
    track: str
    images: int
    boxes: int
    complete: bool
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        s = f"{self.track} track: {self.boxes} boxes of {self.images} images -> {self.out / 'bundled'}"
        if not self.complete:
            s += " (INCOMPLETE: not all 50 images x 20 boxes; the server will refuse it)"
        return s


def _savemat(path: Path, obj: dict) -> None:
    import scipy.io

    with atomic_output(path) as tmp:
        scipy.io.savemat(tmp, obj)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)


def load_box_prediction(path: str | os.PathLike, track: str, meta: dict) -> np.ndarray:
    """One box's prediction as the kit's ``Idenoised_crop``: float32 ``(H, W)`` (RAW) or ``(H, W, 3)`` (sRGB)
    in ``[0, 1]`` (see ``docs/benchmarks.md``).

    Args:
        path: the prediction file.
        track: ``"raw"`` or ``"srgb"``.
        meta: the box's ``raw/KEY.json`` (its ``pattern``, ``sensor`` and ``size`` are used).

    Raises:
        InputError: unreadable, wrong shape or bit depth for the track, or wrong size.
    """
    from rawsynth.mns import Pattern, mosaic

    path = Path(path)
    h, w = meta["size"]
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(path, "unreadable", str(e), hint="save a float array with numpy.save") from None
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(path, "not a float array", f"dtype {arr.dtype}", hint="save float values in [0, 1]")
        x = arr.astype(np.float32)
    elif track == "raw":
        from rawsynth.io import read_png16

        if path.suffix.lower() in (".tif", ".tiff"):
            import cv2

            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise InputError(path, "unreadable", "OpenCV cannot decode it")
            arr = arr[..., ::-1] if arr.ndim == 3 else arr
        else:
            arr = read_png16(path)
        if arr.dtype != np.uint16:
            raise InputError(path, "not 16-bit", f"dtype {arr.dtype}", hint="the RAW track needs 16-bit "
                             "mosaics (DN) or 16-bit linear RGB (rddm restore --save-linear)")
        if arr.ndim == 2:
            s = meta["sensor"]
            x = (arr.astype(np.float32) - s["black_level"]) / float(s["white_level"] - s["black_level"])
        else:
            x = arr.astype(np.float32) / 65535.0
    elif track == "srgb":
        from rawsynth.io import read_srgb

        x = read_srgb(path).image.astype(np.float32)
    else:
        raise ConfigError(f"--track must be one of {TRACKS}, got {track!r}")
    if track == "raw" and x.ndim == 3:
        if x.shape[2] != 3:
            raise InputError(path, "wrong shape", f"{x.shape}", hint="give a (H, W) mosaic or (H, W, 3) linear RGB")
        import torch

        x = mosaic(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None], Pattern(meta["pattern"]))
        x = x[0, 0].numpy()
    want = (h, w) if track == "raw" else (h, w, 3)
    if x.shape != want:
        raise InputError(path, "wrong size", f"{x.shape}, expected {want}")
    return _unit(x)


def _pair(pred_dir: Path, keys: list[str], suffixes: tuple[str, ...]) -> tuple[dict[str, Path], list[str], list]:
    if not pred_dir.is_dir():
        raise BenchmarkError(f"{pred_dir}: no such prediction folder")
    keyset, by_key, extra = set(keys), {}, []
    for p in sorted(pred_dir.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in _EXTS:
            continue
        key = next((c for c in candidate_keys(p.stem, suffixes) if c in keyset), None)
        if key is None:
            extra.append(p.name)
        else:
            by_key.setdefault(key, []).append(p)
    dup = {k: [p.name for p in v] for k, v in by_key.items() if len(v) > 1}
    files = {k: v[0] for k, v in by_key.items() if len(v) == 1}
    return files, extra, dup


def bundle(out: str | os.PathLike, track: str, images: list[int], boxes: int) -> Path:
    """The official kit's ``bundle_submissions_raw`` / ``_srgb``: read ``OUT/NNNN_BB.mat`` back with
    ``scipy.io.loadmat`` and write ``OUT/bundled/NNNN.mat`` for each image number in ``images``."""
    import scipy.io

    out = Path(out)
    (out / "bundled").mkdir(parents=True, exist_ok=True)
    for i in images:
        cells = np.zeros((boxes,), dtype=object)
        for b in range(boxes):
            cells[b] = scipy.io.loadmat(out / f"{i:04d}_{b + 1:02d}.mat")["Idenoised_crop"]
        _savemat(out / "bundled" / f"{i:04d}.mat", {"Idenoised": cells, "israw": track == "raw",
                                                    "eval_version": EVAL_VERSION})
    return out / "bundled"


def write_submission(bench_dir: str | os.PathLike, pred_dir: str | os.PathLike, out: str | os.PathLike,
                     track: str, *, suffixes: tuple[str, ...] = (), overwrite: bool = False) -> SubmitSummary:
    """Write the per-box files and bundles of ``pred_dir``'s predictions on the DND benchmark ``bench_dir``.

    Every box of the benchmark needs its prediction (one error lists the missing, extra, duplicated and
    malformed ones; nothing is written then). A benchmark built from part of DND (``--allow-partial`` or a
    smaller recipe) gives a bundle of those images only, marked incomplete.

    Raises:
        BenchmarkError: ``bench_dir`` is not a DND benchmark, or ``out`` is not empty (without ``overwrite``).
        PairingError: predictions do not match the boxes one to one, or are unreadable / of the wrong shape.
        ConfigError: unknown ``track``.
    """
    if track not in TRACKS:
        raise ConfigError(f"--track must be one of {TRACKS}, got {track!r}")
    bench = Bench.load(bench_dir)
    if bench.dataset != "dnd":
        raise BenchmarkError(f"{bench.root}: a {bench.title} benchmark, not DND; build one with `python -m "
                             "benchmarks build dnd --src dnd_2017 --out DIR`")
    pred_dir, out = Path(pred_dir), Path(out)
    files, extra, dup = _pair(pred_dir, bench.keys, tuple(suffixes))
    missing = [k for k in bench.keys if k not in files and k not in dup]
    crops, unreadable = {}, {}
    for k, p in files.items():
        try:
            crops[k] = load_box_prediction(p, track, bench.meta(k))
        except InputError as e:
            unreadable[p.name] = f"{e.reason}{f' ({e.detail})' if e.detail else ''}"
    if missing or extra or dup or unreadable:
        raise PairingError(pred_dir, missing, extra, dup, None, unreadable, HINT.replace(", or pass --allow-missing "
                                                                                       "for a partial run", ""))
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BenchmarkError(f"{out}: not empty; pass --overwrite to replace its submission files, or choose "
                                 "an empty --out")
        for p in out.glob("[0-9][0-9][0-9][0-9]_[0-9][0-9].mat"):
            p.unlink()
        shutil.rmtree(out / "bundled", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    recipe = bench.manifest.get("recipe", {})
    per_image = int(recipe.get("boxes_per_image", 20))
    by_image: dict[int, list[str]] = {}
    for k in bench.keys:
        by_image.setdefault(int(k.split("_")[0]), []).append(k)
    for k in bench.keys:
        _savemat(out / f"{k}.mat", {"Idenoised_crop": crops[k]})
    images = sorted(i for i, ks in by_image.items() if len(ks) == per_image)
    bundle(out, track, images, per_image)
    complete = bool(bench.manifest.get("complete")) and len(images) == 50 and per_image == 20
    return SubmitSummary(out, track, len(images), len(bench.keys), complete)


def check_bundle(bundled: str | os.PathLike, track: str, shapes: dict[str, tuple[int, ...]] | None = None,
                 images: int = 50, boxes: int = 20) -> list[str]:
    """Check ``bundled/`` against the official kit's format (read with ``scipy.io.loadmat``); returns the problems
    found (empty: it conforms). ``shapes`` maps ``NNNN_BB`` to the expected crop shape."""
    import scipy.io

    problems = []
    bundled = Path(bundled)
    names = sorted(p.name for p in bundled.glob("*.mat"))
    want = [f"{i:04d}.mat" for i in range(1, images + 1)]
    if names != want:
        problems.append(f"files {names[:3]}…, expected {want[0]} … {want[-1]}")
    for n in names:
        m = scipy.io.loadmat(bundled / n)
        keys = sorted(k for k in m if not k.startswith("__"))
        if keys != ["Idenoised", "eval_version", "israw"]:
            problems.append(f"{n}: variables {keys}")
            continue
        if m["eval_version"].tolist() != [EVAL_VERSION]:
            problems.append(f"{n}: eval_version {m['eval_version']!r}")
        if m["israw"].shape != (1, 1) or bool(m["israw"][0, 0]) != (track == "raw"):
            problems.append(f"{n}: israw {m['israw']!r}")
        cells = m["Idenoised"]
        if cells.dtype != object or cells.shape != (1, boxes):
            problems.append(f"{n}: Idenoised is {cells.dtype} {cells.shape}, expected a 1x{boxes} cell")
            continue
        for b in range(boxes):
            c = cells[0, b]
            key = f"{n[:4]}_{b + 1:02d}"
            ndim = 2 if track == "raw" else 3
            if c.dtype != np.float32 or c.ndim != ndim or (ndim == 3 and c.shape[2] != 3):
                problems.append(f"{key}: {c.dtype} {c.shape}, expected float32 with {ndim} dims")
            elif shapes and tuple(c.shape) != tuple(shapes[key]):
                problems.append(f"{key}: shape {c.shape}, expected {shapes[key]}")
            elif not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
                problems.append(f"{key}: values outside [0, 1]")
    return problems
