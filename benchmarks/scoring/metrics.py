"""The metrics of the paper's tables (§4.1), computed with pyiqa. See ``docs/benchmarks.md``."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rawsynth.device import resolve_device
from rawsynth.errors import ConfigError

from ..errors import MissingDependencyError
from .weights import import_clip, offline_hub, required_weights, resolve_weights_dir

__all__ = ["MetricSpec", "METRICS", "DEFAULT_METRICS", "parse_metrics", "create_metric", "metric_settings",
           "convention", "batched_scores", "fid_score", "resolve_device", "IMPLS"]

#: How PSNR/SSIM are computed: ``fast`` (:mod:`.fast`) or ``pyiqa`` (the reference implementation itself).
IMPLS = ("fast", "pyiqa")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: our ``name`` (CLI, leaderboard), ``pyiqa`` name, ``kind`` (``fr`` full-reference per image,
    ``nr`` no-reference per image, ``set`` distribution over the set), direction and table label."""

    name: str
    pyiqa: str
    kind: str
    lower_better: bool
    label: str
    min_size: int = 1
    options: tuple = ()  # extra pyiqa.create_metric keyword arguments, as (key, value) pairs
    convention: str = ""

    @property
    def fast(self) -> str | None:
        """``"psnr"``/``"ssim"`` when :mod:`.fast` computes this metric, else ``None``."""
        return self.pyiqa.rstrip("c") if self.pyiqa in ("psnr", "ssim", "ssimc") else None

    @property
    def y_only(self) -> bool:
        return dict(self.options).get("test_y_channel", self.pyiqa == "ssim")

    def check_size(self, h: int, w: int, what: str) -> None:
        """Raise :class:`ConfigError` when an ``h × w`` image is too small for the metric."""
        if min(h, w) < self.min_size:
            raise ConfigError(f"{self.name} needs images of at least {self.min_size}x{self.min_size} pixels "
                              f"({what} is {h}x{w}); drop {self.name} from --metrics or use larger crops")

    @property
    def arrow(self) -> str:
        return "↓" if self.lower_better else "↑"


_YCBCR = (("test_y_channel", True), ("color_space", "ycbcr"))  # OSEDiff's / StableSR's pyiqa options

#: In the column order of the paper's Table 1 (then the Y-channel variants after ``ssim``).
METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("psnr", "psnr", "fr", False, "PSNR", convention="RGB, 3 channels"),
    MetricSpec("ssim", "ssimc", "fr", False, "SSIM", convention="RGB, 3 channels"),
    MetricSpec("psnr_y", "psnr", "fr", False, "PSNR-Y", options=_YCBCR, convention="Y of YCbCr (BT.601)"),
    MetricSpec("ssim_y", "ssim", "fr", False, "SSIM-Y", 11, options=_YCBCR,
               convention="Y of YCbCr (BT.601), rounded to 0-255"),
    MetricSpec("lpips", "lpips", "fr", True, "LPIPS"),
    MetricSpec("dists", "dists", "fr", True, "DISTS"),
    MetricSpec("fid", "fid", "set", True, "FID"),
    MetricSpec("niqe", "niqe", "nr", True, "NIQE", 96),  # pyiqa computes NIQE on 96x96 blocks
    MetricSpec("musiq", "musiq", "nr", False, "MUSIQ"),
    MetricSpec("clipiqa", "clipiqa", "nr", False, "CLIPIQA"),
)}


#: The paper's Table 1 columns: what ``--metrics`` defaults to (``all`` adds ``psnr_y`` and ``ssim_y``).
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "dists", "fid", "niqe", "musiq", "clipiqa")


def parse_metrics(text: str | list[str] | None, has_gt: bool = True) -> list[str]:
    """``"psnr,ssim"`` (or a list) → validated names in table order. ``None``: the paper's metrics
    (:data:`DEFAULT_METRICS`) that apply; ``"all"``: every metric that applies (no-reference ones only without
    ground truth)."""
    if text is None:
        return [m for m in DEFAULT_METRICS if has_gt or METRICS[m].kind == "nr"]
    if text == "all" or text == ["all"]:
        return [m for m, s in METRICS.items() if has_gt or s.kind == "nr"]
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown metric(s) {unknown or names}; choose from {', '.join(METRICS)} (or 'all')")
    if not has_gt:
        ref = [n for n in names if METRICS[n].kind != "nr"]
        if ref:
            raise ConfigError(f"{', '.join(ref)} need ground truth, which this benchmark has not (e.g. DND); use "
                              "the no-reference metrics niqe, musiq, clipiqa")
    return [m for m in METRICS if m in names]


def convention(name: str, crop_border: int = 0) -> str | None:
    """The convention a PSNR/SSIM score was computed with, e.g. ``"Y of YCbCr (BT.601), crop 4"``; ``None`` for
    metrics that have a single one."""
    spec = METRICS[name]
    if not spec.convention:
        return None
    return spec.convention + (f", crop {crop_border}" if crop_border else "")


def metric_settings(name: str, crop_border: int = 0, impl: str = "pyiqa") -> dict:
    """The pyiqa options a metric runs with (recorded in ``summary.json``), its convention and implementation."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    spec = METRICS[name]
    cfg = DEFAULT_CONFIGS[spec.pyiqa]
    opts = {**cfg["metric_opts"], **dict(spec.options)}
    if crop_border and spec.fast:
        opts["crop_border"] = crop_border
    return {"pyiqa": spec.pyiqa, "kind": spec.kind, "lower_better": spec.lower_better, "options": opts,
            "input": "8-bit sRGB in [0, 1]", "convention": convention(name, crop_border),
            "implementation": "benchmarks.scoring.fast (= pyiqa)" if spec.fast and impl == "fast" else "pyiqa"}


def create_metric(name: str, device: torch.device | str = "cpu", weights_dir: str | os.PathLike | None = None,
                  allow_download: bool = False, crop_border: int = 0):
    """A pyiqa metric built from the weights folder with downloads refused (see
    :func:`~benchmarks.scoring.weights.offline_hub`). pyiqa's "Loading pretrained model" prints are silenced."""
    import pyiqa

    spec = METRICS[name]
    kwargs = dict(spec.options)
    if crop_border and spec.fast:
        kwargs["crop_border"] = crop_border
    if name == "clipiqa":
        import_clip()
        if not allow_download:  # by path: CLIP's by-name load re-downloads a file whose SHA-256 differs
            (w,) = required_weights([name])
            kwargs["backbone"] = str(resolve_weights_dir(weights_dir) / w.relpath)
    with offline_hub(weights_dir, allow_download), contextlib.redirect_stdout(io.StringIO()):
        try:
            return pyiqa.create_metric(spec.pyiqa, device=torch.device(device), **kwargs)
        except ImportError as e:
            raise MissingDependencyError(f"pyiqa metric {spec.pyiqa!r} cannot be built: {type(e).__name__}: {e}") \
                from None


def _to_tensor(images: list[np.ndarray], device) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return x.to(device)


def batched_scores(metric, spec: MetricSpec, preds: list[np.ndarray], gts: list[np.ndarray] | None,
                   batch_size: int, device, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Per-image scores of ``preds`` (uint8 ``(H, W, 3)``; against ``gts`` for FR metrics). Consecutive images of
    equal size are batched together up to ``batch_size``."""
    out = np.empty(len(preds), dtype=np.float64)
    i = 0
    while i < len(preds):
        j = i + 1
        while j < len(preds) and j - i < batch_size and preds[j].shape == preds[i].shape:
            j += 1
        x = _to_tensor(preds[i:j], device)
        with torch.no_grad():
            y = metric(x, _to_tensor(gts[i:j], device)) if spec.kind == "fr" else metric(x)
        out[i:j] = torch.as_tensor(y).detach().double().cpu().reshape(j - i, -1)[:, 0].numpy()
        if on_batch:
            on_batch(j - i)
        i = j
    return out


def fid_score(metric, pred_dir: Path, gt_dir: Path, batch_size: int) -> float:
    """pyiqa's folder-vs-folder FID (``mode="clean"``) on the metric's device, single-process data loading."""
    with contextlib.redirect_stdout(io.StringIO()):
        return float(metric(str(pred_dir), str(gt_dir), mode="clean", num_workers=0, batch_size=batch_size,
                            verbose=False))
