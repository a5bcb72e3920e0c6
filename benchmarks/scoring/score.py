"""Score a method's predictions on a benchmark: ``scores.csv``, ``summary.json`` and the leaderboard entry.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import csv
import gc
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rawsynth.errors import ConfigError, InputError
from rawsynth.io import atomic_output, read_png16
from rawsynth.isp import ISPParams

from ..bench import Bench
from ..errors import BenchmarkError
from ..files import read_json, read_png8, versions, write_json, write_png8
from ..isp import develop_linear
from . import metrics as _metrics
from .fast import fast_scores
from .gtfolder import GtFolder
from .metrics import (IMPLS, METRICS, batched_scores, convention, fid_score, metric_settings, parse_metrics,
                      resolve_device)
from .pairing import pair_predictions
from .weights import require_weights

__all__ = ["PRED_SPACES", "ScoreResult", "load_prediction", "score", "read_leaderboard", "update_leaderboard",
           "check_method_name"]

PRED_SPACES = ("srgb", "linear")
_METHOD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+()\[\]-]{0,99}")


@dataclass
class ScoreResult:
    """``summary`` (as written to ``summary.json``), ``per_image[key][metric]``, and where they were written."""

    out_dir: Path
    summary: dict
    per_image: dict

    def line(self) -> str:
        parts = [f"{METRICS[m].label} {v['mean']:.4f}" + (f" [{v['convention']}]" if v.get("convention") else "")
                 for m, v in self.summary["metrics"].items() if v.get("mean") is not None]
        return f"{self.summary['method']} on {self.summary['bench']['title']} (n={self.summary['n']}): " + \
            ", ".join(parts)


def check_method_name(method: str) -> str:
    """Method names label leaderboard rows and name ``results/METHOD/``: letters, digits, space and ``._+()[]-``."""
    if not isinstance(method, str) or not _METHOD_RE.fullmatch(method):
        raise ConfigError(f"invalid --method {method!r}: use 1-100 letters, digits, spaces or ._+()[]- "
                          "(no slashes), starting with a letter or digit, e.g. 'ISP+SeeSR-s50'")
    return method


def load_prediction(path: str | os.PathLike, space: str, meta: dict) -> np.ndarray:
    """A prediction as ``(H, W, 3)`` uint8 sRGB: an sRGB image rounded to 8 bits, or (``space="linear"``) a
    16-bit linear camera-RGB PNG developed with the image's own PTP parameters (``meta["isp"]``)."""
    if space == "srgb":
        return read_png8(path)
    elif space == "linear":
        arr = read_png16(path)
        if arr.ndim != 3:
            raise InputError(path, "not linear RGB", f"shape {arr.shape}", hint="write (H, W, 3) uint16 round(x*65535)")
        return develop_linear(arr, ISPParams.from_dict(meta["isp"]))
    else:
        raise ConfigError(f"--pred-space must be one of {PRED_SPACES}, got {space!r}")


def _stats(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"mean": None, "std": None, "n": 0, "nonfinite": int(len(values))}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "n": int(len(finite)),
            "nonfinite": int(len(values) - len(finite))}


def read_leaderboard(bench: Bench) -> dict:
    """``leaderboard.json`` of a benchmark (an empty one if it does not exist yet)."""
    p = bench.root / "leaderboard.json"
    if not p.exists():
        return {"dataset": bench.dataset, "title": bench.title, "entries": []}
    lb = read_json(p, "leaderboard")
    if not isinstance(lb.get("entries"), list):
        raise InputError(p, "invalid leaderboard", "no `entries` list", hint="delete it; `score` recreates it")
    return lb


def update_leaderboard(bench: Bench, entry: dict) -> Path:
    """Add ``entry`` to ``leaderboard.json`` (replacing an earlier entry of the same method)."""
    lb = read_leaderboard(bench)
    lb["entries"] = [e for e in lb["entries"] if e.get("method") != entry["method"]] + [entry]
    write_json(bench.root / "leaderboard.json", lb)
    return bench.root / "leaderboard.json"


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img")


def default_gt_out(pred_dir: str | os.PathLike) -> Path:
    """Where ``score --gt`` writes by default: ``PRED-scores/`` next to the prediction folder."""
    p = Path(pred_dir).resolve()
    return p.parent / f"{p.name}-scores"


def score(bench_dir: str | os.PathLike | None, pred_dir: str | os.PathLike, method: str,
          metrics: str | list[str] | None = None, *,
          out_dir: str | os.PathLike | None = None, suffixes: tuple[str, ...] = (), pred_space: str = "srgb",
          allow_missing: bool = False, device: str = "auto", batch_size: int = 8,
          weights_dir: str | os.PathLike | None = None, allow_download: bool = False, verify_weights: bool = False,
          progress: bool = False, run_info: dict | None = None, gt_dir: str | os.PathLike | None = None,
          crop_border: int = 0, impl: str = "fast") -> ScoreResult:
    """Score ``pred_dir`` on the benchmark at ``bench_dir``, or against the ground-truth folder ``gt_dir`` (see
    ``docs/benchmarks.md`` and :mod:`.gtfolder`).

    Args:
        bench_dir: a built benchmark (``None`` with ``gt_dir``).
        pred_dir: the method's outputs, one image per benchmark key (see :mod:`.pairing`).
        method: the leaderboard label.
        metrics: names or ``"psnr,ssim,..."``; default every metric that applies.
        out_dir: where ``scores.csv`` and ``summary.json`` go (default ``BENCH/results/METHOD``).
        suffixes: method-specific name suffixes to strip when pairing.
        pred_space: ``"srgb"`` or ``"linear"``.
        allow_missing: score the images that have a prediction (the count is recorded).
        device: ``cpu``, ``cuda`` or ``auto``.
        batch_size: images per metric call.
        weights_dir: the weights folder (:func:`~benchmarks.scoring.weights.resolve_weights_dir`).
        allow_download: let pyiqa download missing weights into the weights folder.
        verify_weights: hash the weight files against their published SHA-256 first.
        progress: tqdm bars.
        run_info: recorded in the summary and leaderboard (used by ``benchmarks run``).
        gt_dir: a folder of ground-truth images to score against instead of a benchmark (sRGB predictions only;
            nothing is added to a leaderboard; ``out_dir`` defaults to ``PRED-scores/`` beside ``pred_dir``).
        crop_border: pixels removed at every edge before PSNR/SSIM (pyiqa's ``crop_border``).
        impl: ``"fast"`` (:mod:`.fast`, batched float32) or ``"pyiqa"`` for PSNR/SSIM.

    Raises:
        PairingError: predictions missing (unless ``allow_missing``), extra, duplicated, unreadable or wrongly sized.
        MissingWeightsError: weight files of the chosen metrics are absent (and downloads are off).
        MissingDependencyError: the ``clip`` package cannot be imported for CLIP-IQA.
        ConfigError: an invalid option (metric name, method name, device, ...).
        BenchmarkError: ``bench_dir`` is not a benchmark, or nothing to score.
    """
    t0 = time.perf_counter()
    if (bench_dir is None) == (gt_dir is None):
        raise ConfigError("score: give either a benchmark (--bench) or a ground-truth folder (--gt), not both")
    bench = Bench.load(bench_dir) if gt_dir is None else GtFolder.load(gt_dir)
    if gt_dir is not None and pred_space != "srgb":
        raise ConfigError("score --gt: only sRGB predictions (--pred-space srgb); linear predictions need a "
                          "benchmark's per-image ISP parameters (--bench)")
    if impl not in IMPLS:
        raise ConfigError(f"--impl must be one of {IMPLS}, got {impl!r}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ConfigError(f"--crop-border must be a non-negative integer, got {crop_border!r}")
    check_method_name(method)
    names = parse_metrics(metrics, bench.has_gt)
    if pred_space not in PRED_SPACES:
        raise ConfigError(f"--pred-space must be one of {PRED_SPACES}, got {pred_space!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {batch_size!r}")
    dev = resolve_device(device)

    # 1. pairing and sizes: one error listing every problem
    pairing = pair_predictions(pred_dir, bench.keys, tuple(suffixes), allow_missing, check=False,
                               aliases=getattr(bench, "aliases", None))
    preds: dict[str, np.ndarray] = {}
    wrong_size, unreadable = {}, {}
    for key, path in pairing.files.items():
        meta = bench.meta(key)
        try:
            img = load_prediction(path, pred_space, meta)
        except InputError as e:
            unreadable[path.name] = f"{e.reason}{f' ({e.detail})' if e.detail else ''}"
            continue
        h, w = meta["size"]
        if img.shape[:2] != (h, w):
            wrong_size[path.name] = f"{img.shape[0]}x{img.shape[1]}, expected {h}x{w}"
        else:
            preds[key] = img
    if err := pairing.error(allow_missing, wrong_size, unreadable):
        raise err
    keys = [k for k in bench.keys if k in preds]
    if not keys:
        raise BenchmarkError(f"{pred_dir}: no prediction to score")
    for name in names:
        for k in keys:
            h, w = preds[k].shape[:2]
            c = 2 * crop_border if METRICS[name].fast else 0
            METRICS[name].check_size(h - c, w - c, f"image {k}" + (f" after --crop-border {crop_border}" if c else ""))

    # 2. weights, before computing anything
    wreport = require_weights(names, weights_dir, verify=verify_weights) if not allow_download else None

    # 3. compute
    gts = [bench.gt_srgb(k) for k in keys] if bench.has_gt and any(METRICS[n].kind != "nr" for n in names) else None
    pred_list = [preds[k] for k in keys]
    per_image: dict[str, dict] = {k: {} for k in keys}
    results, seconds = {}, {}
    for name in names:
        spec, t = METRICS[name], time.perf_counter()
        use_fast = spec.fast is not None and impl == "fast"
        metric = None if use_fast else _metrics.create_metric(name, dev, weights_dir, allow_download, crop_border)
        if spec.kind == "set":
            with tempfile.TemporaryDirectory(prefix="bench-fid-") as tmp:
                pd_, gd = Path(tmp, "pred"), Path(tmp, "gt")
                pd_.mkdir()
                gd.mkdir()
                for k, p, g in zip(keys, pred_list, gts, strict=True):
                    write_png8(pd_ / f"{k}.png", p)
                    write_png8(gd / f"{k}.png", g)
                value = fid_score(metric, pd_, gd, batch_size)
            ok = math.isfinite(value)
            results[name] = {"value": value if ok else None, "mean": value if ok else None, "n": len(keys),
                             "std": None, "nonfinite": 0 if ok else 1}
        else:
            bar = _progress(progress, len(keys), name)
            if use_fast:
                vals = fast_scores(spec.fast, spec.y_only, pred_list, gts, crop_border=crop_border,
                                   batch_size=batch_size, device=dev, on_batch=bar.update if bar else None)
            else:
                vals = batched_scores(metric, spec, pred_list, gts, batch_size, dev, bar.update if bar else None)
            if bar:
                bar.close()
            for k, v in zip(keys, vals, strict=True):
                per_image[k][name] = float(v)
            results[name] = _stats(vals)
        results[name]["settings"] = metric_settings(name, crop_border, impl)
        results[name]["convention"] = convention(name, crop_border)
        seconds[name] = round(time.perf_counter() - t, 3)
        del metric
        gc.collect()

    # 4. write
    out = Path(out_dir) if out_dir else (bench.root / "results" / method if gt_dir is None else
                                         default_gt_out(pred_dir))
    out.mkdir(parents=True, exist_ok=True)
    per_metric = [n for n in names if METRICS[n].kind != "set"]
    with atomic_output(out / "scores.csv") as tmp, open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["key", "file", *per_metric])
        for k in keys:
            wr.writerow([k, pairing.files[k].name, *(_fmt(per_image[k][n]) for n in per_metric)])
    summary = {
        "method": method, "pred_dir": str(Path(pred_dir).resolve()), "pred_space": pred_space,
        "suffixes": list(suffixes),
        "bench": {"root": str(bench.root.resolve()), "dataset": bench.dataset, "title": bench.title,
                  "images": len(bench.keys), "complete": bool(bench.manifest.get("complete", True)),
                  "layout": bench.layout, "layout_title": bench.layout_title},
        "gt_dir": None if gt_dir is None else str(Path(gt_dir).resolve()), "crop_border": crop_border,
        "impl": impl,
        "n": len(keys), "missing": pairing.missing, "metrics": results, "seconds_per_metric": seconds,
        "device": str(dev), "batch_size": batch_size, "versions": versions(),
        "weights": None if wreport is None else {"dir": str(wreport.weights_dir),
                                                 "files": [s.to_dict() for s in wreport.files]},
        "allow_download": allow_download, "run": run_info,
        "scored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - Python 3.10
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(out / "summary.json", summary)
    if gt_dir is not None:
        return ScoreResult(out, summary, per_image)
    entry = {"method": method, "metrics": {n: results[n]["mean"] for n in names},
             "conventions": {n: results[n]["convention"] for n in names if results[n]["convention"]},
             "n": len(keys),
             "images": len(bench.keys), "pred_dir": summary["pred_dir"], "pred_space": pred_space,
             "suffixes": list(suffixes), "summary": os.path.relpath(out / "summary.json", bench.root),
             "scored_at": summary["scored_at"], "run": run_info}
    update_leaderboard(bench, entry)
    return ScoreResult(out, summary, per_image)


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else repr(float(v))
