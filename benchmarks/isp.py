"""Two-stage inputs: turn a RAW benchmark into sRGB images for sRGB restorers (the paper's "ISP+X" baselines).
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import cv2
import numpy as np
import torch

from rawsynth.errors import ConfigError, InputError
from rawsynth.isp import ISPParams, process
from rawsynth.mns import Pattern, SensorParams, demosaic_bilinear, normalize

from .errors import BenchmarkError, MissingDependencyError
from .files import to_uint8, write_json, write_png8

__all__ = ["Demosaic", "ISP", "demosaic", "develop_linear", "develop_raw", "load_ddnet", "run_isp", "make_isp"]


class Demosaic(str, Enum):
    """Demosaicing of the classical ISP: ``BILINEAR`` (rawsynth's reference) or ``OPENCV_EA`` (edge-aware)."""

    BILINEAR = "bilinear"
    OPENCV_EA = "opencv-ea"


class ISP(str, Enum):
    """Which ISP turns RAW into sRGB: ``CLASSICAL`` (demosaic + PTP) or ``DDNET`` (learned DN+DM + PTP)."""

    CLASSICAL = "classical"
    DDNET = "ddnet"


#: Our pattern (top-left 2x2 read row-wise) → OpenCV's edge-aware conversion code. OpenCV names a layout by
#: its second row's second and third pixels, so its ``BayerBG`` is our ``RGGB``.
_CV_EA = {
    Pattern.RGGB: cv2.COLOR_BayerBG2RGB_EA,
    Pattern.BGGR: cv2.COLOR_BayerRG2RGB_EA,
    Pattern.GRBG: cv2.COLOR_BayerGB2RGB_EA,
    Pattern.GBRG: cv2.COLOR_BayerGR2RGB_EA,
}


def demosaic(raw: torch.Tensor, pattern: Pattern | str, method: Demosaic | str = Demosaic.BILINEAR) -> torch.Tensor:
    """Demosaic one normalised mosaic.

    Args:
        raw: ``(1, 1, H, W)`` float normalised RAW (``(DN − black)/(white − black)``).
        pattern: its Bayer pattern.
        method: :class:`Demosaic`.

    Returns:
        ``(1, 3, H, W)`` float linear camera RGB. ``bilinear`` keeps values below 0; ``opencv-ea`` works on
        ``clip(raw, 0, 1)`` quantised to 16 bits (OpenCV's edge-aware demosaic takes 8/16-bit integers only).
    """
    method, pattern = Demosaic(method), Pattern(pattern)
    if method is Demosaic.BILINEAR:
        return demosaic_bilinear(raw, pattern)
    elif method is Demosaic.OPENCV_EA:
        if raw.shape[0] != 1:
            raise ConfigError("opencv-ea demosaics one image at a time: pass a (1, 1, H, W) mosaic")
        u16 = np.round(raw[0, 0].detach().cpu().double().clamp(0, 1).numpy() * 65535.0).astype(np.uint16)
        rgb = cv2.cvtColor(u16, _CV_EA[pattern]).astype(np.float32) / 65535.0
        return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(raw)
    else:  # pragma: no cover - Demosaic() above rejects anything else
        raise ConfigError(f"unknown demosaic {method!r}")


def develop_linear(linear: np.ndarray | torch.Tensor, isp: ISPParams) -> np.ndarray:
    """PTP of a linear camera-RGB image → ``(H, W, 3)`` uint8 sRGB.

    Args:
        linear: ``(H, W, 3)`` array or ``(1, 3, H, W)`` tensor, float in ``[0, 1]`` or uint16 (``x · 65535``).
        isp: the image's parameters.
    """
    if isinstance(linear, np.ndarray):
        if linear.dtype == np.uint16:
            linear = linear.astype(np.float32) / np.float32(65535.0)
        linear = torch.from_numpy(np.ascontiguousarray(linear, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        srgb = process(linear.float(), isp)
    return to_uint8(srgb[0].permute(1, 2, 0).cpu().numpy())


def develop_raw(raw_dn: np.ndarray, meta: dict, method: Demosaic | str = Demosaic.BILINEAR) -> np.ndarray:
    """The classical ISP on one image: DN → normalise → demosaic → PTP → ``(H, W, 3)`` uint8 sRGB.

    Args:
        raw_dn: ``(H, W)`` uint16 mosaic.
        meta: its metadata (``pattern``, ``sensor``, ``isp`` as written by the builders).
        method: :class:`Demosaic`.
    """
    pattern, sensor, isp = _meta_params(meta)
    raw = normalize(torch.from_numpy(raw_dn.astype(np.int32))[None, None], sensor)
    return develop_linear(demosaic(raw, pattern, method).clamp(0.0, 1.0), isp)


def _meta_params(meta: dict) -> tuple[Pattern, SensorParams, ISPParams]:
    try:
        return Pattern(meta["pattern"]), SensorParams.from_dict(meta["sensor"]), ISPParams.from_dict(meta["isp"])
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"image {meta.get('key', '?')}: metadata lacks a valid pattern/sensor/isp ({e})") from None


def load_ddnet(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> Callable:
    """Load DDNet from a diffusers-style folder and return ``f(raw (1, 1, H, W), pattern) -> (1, 3, H, W)``.

    ``rddm.models.ddnet`` is imported here, never at module import, so the classical ISP needs no ``rddm``.

    Raises:
        MissingDependencyError: ``rddm.models.ddnet`` cannot be imported.
        InputError: the checkpoint folder is missing or not a DDNet checkpoint.
    """
    try:
        from rddm.models.ddnet import DDNet
    except ImportError as e:
        raise MissingDependencyError(
            f"--isp ddnet needs the RDDM model package, but rddm.models.ddnet cannot be imported "
            f"({type(e).__name__}: {e}). Install the rddm extra with a version that ships DDNet "
            "(pip install -e '.[rddm]'), or use --isp classical") from None
    path = Path(checkpoint)
    if not path.exists():
        raise InputError(path, "unreadable", "no such checkpoint",
                         hint="pass the folder written by DDNet.save_pretrained (config + weights)")
    try:
        model = DDNet.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - any loading failure is a bad checkpoint for the user
        raise InputError(path, "not a DDNet checkpoint", f"{type(e).__name__}: {e}",
                         hint="pass the folder written by DDNet.save_pretrained") from None
    model = model.to(device).eval()

    def run(raw: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        with torch.no_grad():
            out = model(raw.to(device), [Pattern(pattern)])
        if not isinstance(out, torch.Tensor) or out.shape != (raw.shape[0], 3, *raw.shape[-2:]):
            raise BenchmarkError(f"{path}: DDNet returned {getattr(out, 'shape', type(out))}, expected "
                                 f"(B, 3, {raw.shape[-2]}, {raw.shape[-1]}) linear RGB")
        return out.float().cpu()

    return run


def make_isp(isp: ISP | str = ISP.CLASSICAL, demosaic_method: Demosaic | str = Demosaic.BILINEAR,
             ddnet: str | os.PathLike | None = None, device: str = "cpu") -> tuple[Callable, dict]:
    """An ISP function ``f(raw_dn, meta) -> (H, W, 3) uint8`` and a JSON description of its settings."""
    isp = ISP(isp)
    if isp is ISP.CLASSICAL:
        if ddnet is not None:
            raise ConfigError("--ddnet is only used with --isp ddnet")
        method = Demosaic(demosaic_method)
        return (lambda dn, meta: develop_raw(dn, meta, method)), {"isp": isp.value, "demosaic": method.value}
    elif isp is ISP.DDNET:
        if ddnet is None:
            raise ConfigError("--isp ddnet needs --ddnet CKPT (a DDNet.save_pretrained folder)")
        from .scoring.metrics import resolve_device

        device = resolve_device(device)
        net = load_ddnet(ddnet, device)

        def run(dn, meta):
            pattern, sensor, params = _meta_params(meta)
            raw = normalize(torch.from_numpy(dn.astype(np.int32))[None, None], sensor)
            return develop_linear(net(raw, pattern).clamp(0.0, 1.0), params)

        return run, {"isp": isp.value, "ddnet": os.fspath(Path(ddnet).resolve()), "device": str(device)}
    else:  # pragma: no cover - ISP() above rejects anything else
        raise ConfigError(f"unknown ISP {isp!r}")


def run_isp(bench_dir: str | os.PathLike, out_dir: str | os.PathLike, isp: ISP | str = ISP.CLASSICAL,
            demosaic_method: Demosaic | str = Demosaic.BILINEAR, ddnet: str | os.PathLike | None = None,
            device: str = "cpu", overwrite: bool = False, progress: bool = False) -> Path:
    """Develop every RAW image of a benchmark into ``out_dir/KEY.png``; write ``out_dir/isp.json`` last.

    Returns:
        ``out_dir``.
    """
    from .bench import Bench

    bench = Bench.load(bench_dir)
    fn, settings = make_isp(isp, demosaic_method, ddnet, device)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BenchmarkError(f"{out}: not empty; choose a new --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    keys = bench.keys
    if progress:
        from tqdm import tqdm

        keys = tqdm(keys, desc=f"isp {settings['isp']}", unit="img")
    for key in keys:
        write_png8(out / f"{key}.png", fn(bench.raw_dn(key), bench.meta(key)))
    write_json(out / "isp.json", {**settings, "bench": str(Path(bench_dir).resolve()), "dataset": bench.dataset,
                                  "images": len(bench.keys), "seconds": round(time.perf_counter() - t0, 3)})
    return out
