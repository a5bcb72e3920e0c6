"""``rawsynth demo``: real photos → IPTP → MNS → RAW files (DNG, 16-bit PNG) → back through PTP, as one picture.
See ``docs/isp.md``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from ._version import __version__
from .io.dng import write_dng
from .io.png16 import write_png16
from .isp import process, sample_isp_params, unprocess
from .mns import (Pattern, SensorParams, add_noise, cfa_masks, demosaic_bilinear, mosaic, normalize, quantize,
                  sample_noise_params)
from .rng import numpy_rng, torch_generator

__all__ = ["DEMO_PHOTOS", "run_demo"]

DEMO_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
COLUMNS = ("sRGB input", "IPTP: linear cam RGB", "MNS: noisy RAW (CFA)", "RAW -> demosaic -> PTP",
           "PTP(IPTP(x))")


def _load_photo(name: str, size: int) -> torch.Tensor:
    import skimage.data

    a = getattr(skimage.data, name)()
    h, w = a.shape[:2]
    s = min(size, h, w) // 2 * 2
    top, left = (h - s) // 2 // 2 * 2, (w - s) // 2 // 2 * 2
    a = np.ascontiguousarray(a[top:top + s, left:left + s, :3])
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0


def _to_u8(x: torch.Tensor) -> np.ndarray:
    return (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def run_demo(out_dir: str | Path, seed: int = 0, size: int = 256, photos=DEMO_PHOTOS) -> Path:
    """Run the round trip on the bundled photos and write the files listed in the module docstring.

    Returns:
        The path of ``isp_roundtrip.png``.
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sensor = SensorParams(12, 256, 4095)
    patterns = list(Pattern)
    rows = []
    for i, name in enumerate(photos):
        isp = sample_isp_params(numpy_rng(seed, name, "isp"))
        noise = sample_noise_params(numpy_rng(seed, name, "noise"))
        pattern = patterns[i % len(patterns)]
        gen = torch_generator(seed, name, "noise")
        srgb = _load_photo(name, size)
        lin = unprocess(srgb, isp)
        raw = add_noise(mosaic(lin, pattern), noise, gen)
        dn = quantize(raw, sensor)
        raw_n = normalize(dn, sensor)
        developed = process(demosaic_bilinear(raw_n.clamp_min(0), pattern), isp)
        cfa_view = raw_n.clamp(0, 1) * cfa_masks(pattern, 1, *raw_n.shape[-2:])  # each site in its own colour
        panels = [srgb, lin, cfa_view ** (1 / 2.2), developed, process(lin, isp)]
        rows.append(np.concatenate([_label(_to_u8(p), t) for p, t in zip(panels, COLUMNS)], axis=1))

        mosaic_dn = dn[0, 0].numpy()
        write_dng(out / f"{name}.dng", mosaic_dn, pattern, sensor, isp, iso=noise.iso)
        write_png16(out / f"{name}_raw.png", mosaic_dn)
        meta = {"source": f"skimage.data.{name}", "seed": seed, "key": name, "pattern": pattern.value,
                "sensor": sensor.to_dict(), "isp": isp.to_dict(), "noise": noise.to_dict(),
                "rawsynth_version": __version__}
        (out / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    grid = np.concatenate(rows, axis=0)
    path = out / "isp_roundtrip.png"
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path
