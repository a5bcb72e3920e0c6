"""Small real-photo samples for shard and reader tests (noise-free mosaics of skimage photos)."""

from __future__ import annotations

import numpy as np
import torch

from rawsynth.isp import fixed_isp_params, unprocess
from rawsynth.mns import Pattern, SensorParams, mosaic, quantize
from rawsynth.shards import encode_sample, write_shard

from ..conftest import PHOTOS, photo

SENSOR = SensorParams(12, 256, 4095)


def make_meta(key: str, pattern: Pattern | str = "RGGB", sensor: SensorParams = SENSOR, **extra) -> dict:
    isp = fixed_isp_params()
    meta = {
        "key": key, "seed": 0, "mode": "ddnet", "pattern": Pattern(pattern).value, "sensor": sensor.to_dict(),
        "isp": isp.to_dict(), "noise": {"iso": 100.0, "lambda_shot": 1e-4, "lambda_read": 1e-6},
        "degradation": None, "source": {"path": "skimage", "sha256": "0" * 64},
        "crop": {"top": 0, "left": 0, "height": 64, "width": 64, "policy": "skip"}, "version": "test",
    }
    meta.update(extra)
    return meta


def make_arrays(index: int = 0, size: int = 64, pattern: Pattern | str = "RGGB",
                sensor: SensorParams = SENSOR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(raw_dn (H, W) uint16, hq16 (H, W, 3) uint16, srgb (H, W, 3) uint8)``: raw is exactly the quantised
    mosaic of the stored HQ (``hq16 / 65535``)."""
    name = PHOTOS[index % len(PHOTOS)]
    off = 32 * (index // len(PHOTOS)) + 64
    srgb = photo(name, None)[..., off:off + size, off:off + size]
    hq = unprocess(srgb, fixed_isp_params())
    hq16 = torch.round(hq.double() * 65535).to(torch.int32)
    hq_stored = hq16.double() / 65535
    raw_dn = quantize(mosaic(hq_stored, Pattern(pattern)), sensor)[0, 0].numpy()
    srgb8 = torch.round(srgb[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return raw_dn, hq16[0].permute(1, 2, 0).numpy().astype(np.uint16), srgb8


def make_sample(key: str, index: int = 0, size: int = 64, pattern: Pattern | str = "RGGB",
                sensor: SensorParams = SENSOR, srgb: bool = False) -> dict[str, bytes]:
    raw, hq, s8 = make_arrays(index, size, pattern, sensor)
    extra = dict(lq_srgb=s8, gt_srgb=s8) if srgb else {}
    return encode_sample(key, raw, hq, make_meta(key, pattern, sensor), **extra)


def make_shards(folder, n_shards: int, per_shard: int, size: int = 32) -> list[str]:
    """``n_shards`` shards of ``per_shard`` samples (keys ``{shard:06d}_{i}``), patterns cycling."""
    paths = []
    patterns = list(Pattern)
    for j in range(n_shards):
        samples = [make_sample(f"{j:06d}_{i}", j * per_shard + i, size, patterns[(j + i) % 4])
                   for i in range(per_shard)]
        paths.append(write_shard(folder / f"shard-{j:06d}.tar", samples).path)
    return paths
