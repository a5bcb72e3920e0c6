"""Measure the GroupNorm statistics modes of tiled ``rddm restore`` against the untiled run (the ground truth).

``python -m benchmarks.perf.groupnorm_stats --help``. Builds an RDDM with SD-2.1's VAE and UNet configs and
random weights (:func:`rddm.restore.memory.build_model`; fp32, nothing downloaded), makes a realistic noisy
mosaic with the project's own synthesis (a ``skimage.data`` photo upscaled ×``--upscale`` so that, like a crop
of a 24-MP frame, the scene is smooth at pixel level; ``rawsynth.pipeline.synthesize`` in ``ddnet`` mode at
``--iso``; normalised with the sample's sensor), then runs each stage (the RVAE encoder on the mosaic, the UNet
on the untiled encoder's latent) untiled and tiled with each ``--norm-stats`` mode:

* ``tile``: each tile its own statistics;
* ``global``: statistics of a copy binned by ``--bin-factor`` (default 5.875 = 6016/1024: what the 1024-px
  statistics pass does to a 24-MP frame), i.e. ``stats_size = long side / bin factor``;
* ``pooled``: exact full-resolution statistics pooled over all tiles (:func:`rddm.restore.groupnorm.pooled_tile_fn`);
* ``oracle`` (with ``--oracle``): the untiled pass's own statistics imposed on every tile.

Prints one JSON line per (stage, mode) and a Markdown table: PSNR (peak = the untiled output's max − min),
max and mean absolute error vs untiled, seconds. Stage inputs are always the untiled ones, so each row is the
error that stage's tiling adds by itself. Time: about 3 minutes per 512² tile per stage pass on 2 shared CPU
cores; the defaults (768×512, 2 tiles) take about 25 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import time

__all__ = ["main", "noisy_mosaic"]


def noisy_mosaic(height: int, width: int, *, photo: str = "coffee", upscale: float = 2.0, iso: float = 3200.0,
                 seed: int = 0):
    """``(1, 1, height, width)`` float32 normalised RGGB mosaic synthesised from a ``skimage.data`` photo."""
    import cv2
    import numpy as np
    import skimage.data
    import torch

    from rawsynth.mns.sensor import normalize
    from rawsynth.pipeline import SynthConfig, synthesize

    img = getattr(skimage.data, photo)()
    img = cv2.resize(img, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    if img.shape[0] < height or img.shape[1] < width:
        raise SystemExit(f"the upscaled {photo} is {img.shape[1]}x{img.shape[0]}, smaller than {width}x{height}: "
                         "raise --upscale")
    crop = np.ascontiguousarray(img[:height, :width, :3])
    cfg = SynthConfig(mode="ddnet", crop=max(height, width), iso_range=(iso, iso), patterns=("RGGB",))
    s = synthesize(crop, "gnstats", seed, cfg)
    raw = normalize(torch.from_numpy(s.raw_dn.astype("float32"))[None, None], s.sensor)
    return raw.float(), s


def _errors(out, ref) -> dict:
    d = (out.float() - ref.float())
    peak = float(ref.max() - ref.min())
    mse = float((d ** 2).mean())
    return {"psnr_db": round(10 * math.log10(peak ** 2 / mse), 2) if mse > 0 else float("inf"),
            "max_abs": float(d.abs().max()), "mean_abs": float(d.abs().mean()), "ref_std": float(ref.std())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["sd21", "tiny"], default="sd21", help="sd21 (default) or the test suite's tiny "
                    "models (a quick check of the script)")
    ap.add_argument("--size", default="768x512", help="WIDTHxHEIGHT of the mosaic crop (default 768x512)")
    ap.add_argument("--tile", type=int, default=512, help="tile side in pixels (default 512)")
    ap.add_argument("--overlap", type=int, help="tile overlap in pixels (default tile/4)")
    ap.add_argument("--bin-factor", type=float, default=6016 / 1024, help="binning factor of the global "
                    "statistics copy (default 5.875, a 24-MP frame's with the 1024-px pass)")
    ap.add_argument("--iso", type=float, default=3200.0)
    ap.add_argument("--photo", default="coffee", help="skimage.data photo (default coffee)")
    ap.add_argument("--upscale", type=float, default=2.0)
    ap.add_argument("--stages", default="encoder,unet", help="comma-separated: encoder, unet (default both)")
    ap.add_argument("--oracle", action="store_true", help="also impose the untiled pass's own statistics")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    args = ap.parse_args(argv)

    import torch

    from rddm.restore.groupnorm import (downscale_latent, downscale_mosaic, record_groupnorm_stats,
                                        with_groupnorm_stats)
    from rddm.restore.memory import build_model
    from rddm.restore.restorer import Restorer
    from rddm.restore.tiling import tiled_apply

    if args.threads:
        torch.set_num_threads(args.threads)
    w, _, h = args.size.lower().partition("x")
    h, w = int(h), int(w)
    t0 = time.perf_counter()
    model = build_model(args.arch)
    raw, sample = noisy_mosaic(h, w, photo=args.photo, upscale=args.upscale, iso=args.iso)
    d = raw[0, 0]
    print(json.dumps({"built_s": round(time.perf_counter() - t0, 1), "parameters": sum(p.numel() for p in
                      model.parameters()), "mosaic": [h, w], "iso": args.iso, "noise": sample.meta.get("noise"),
                      "neighbour_diff_std": float((d[:, 2:] - d[:, :-2]).std())}), flush=True)
    emb = torch.zeros(1, 77, model.unet.config.cross_attention_dim)
    stats_side = None
    rows = []
    with torch.no_grad():
        z_ref = None
        for stage in args.stages.split(","):
            if stage == "encoder":
                x = raw

                def fn(v):
                    return model.encode(v, ["RGGB"] * v.shape[0])
            elif stage == "unet":
                x = z_ref if z_ref is not None else model.encode(raw, "RGGB")

                def fn(v):
                    return model.denoise(v, ["RGGB"] * v.shape[0], emb.expand(v.shape[0], -1, -1))
            else:
                raise SystemExit(f"unknown stage {stage!r}")
            t1 = time.perf_counter()
            with record_groupnorm_stats(model) as untiled_stats:
                ref = fn(x)
            times = {"untiled": time.perf_counter() - t1}
            if stage == "encoder":
                z_ref = ref
            modes = ["tile", "global", "pooled"] + (["oracle"] if args.oracle else [])
            for mode in modes:
                side = max(64, round(max(h, w) / args.bin_factor) // 64 * 64)
                stats_side = side
                r = Restorer(model, tile=args.tile, overlap=args.overlap, norm_stats="tile" if mode == "oracle"
                             else mode, stats_size=side)
                f = r.factor if stage == "encoder" else 1
                if stage == "encoder":
                    def sm(v, side=side, r=r):
                        return downscale_mosaic(v, "RGGB", side, r.pixel_multiple)
                else:
                    def sm(v, side=side, r=r):
                        return downscale_latent(v, side // r.factor, r.align)
                t1 = time.perf_counter()
                if mode == "oracle":
                    out = tiled_apply(with_groupnorm_stats(fn, model, untiled_stats), x, r.tiling, in_scale=f)
                else:
                    r._shared = mode != "tile"
                    out = r._stage(fn, x, sm, in_scale=f)
                times[mode] = time.perf_counter() - t1
                row = {"stage": stage, "mode": mode, "seconds": round(times[mode], 1),
                       "untiled_seconds": round(times["untiled"], 1), "stats_size": side if mode == "global"
                       else None, **_errors(out, ref)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| stage | mode | PSNR vs untiled (dB) | max abs | mean abs | s (untiled s) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['mode']}{' (' + str(r['stats_size']) + ' px)' if r['stats_size'] else ''} | "
              f"{r['psnr_db']:.2f} | {r['max_abs']:.4g} | {r['mean_abs']:.4g} | {r['seconds']} "
              f"({r['untiled_seconds']}) |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; global statistics copy {stats_side} px")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
