"""Time PSNR/SSIM scoring: :mod:`benchmarks.scoring.fast` against a plain pyiqa loop, on the same images.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

METRICS = {"y": ("psnr_y", "ssim_y"), "rgb": ("psnr", "ssim")}


def make_pairs(n: int, size: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` (prediction, ground truth) uint8 ``(size, size, 3)`` pairs from scikit-image's photos."""
    import cv2
    import skimage.data

    photos = [getattr(skimage.data, k)() for k in ("astronaut", "chelsea", "coffee", "rocket", "cat")]
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for i in range(n):
        big = cv2.resize(np.ascontiguousarray(photos[i % len(photos)][..., :3]), (size + 64, size + 64),
                         interpolation=cv2.INTER_AREA)
        oy, ox = (7 * i) % 64, (13 * i) % 64
        g = np.ascontiguousarray(big[oy:oy + size, ox:ox + size])
        kind = i % 4
        if kind == 0:
            p = cv2.GaussianBlur(g, (7, 7), 0.8 + 0.05 * (i % 20))
        elif kind == 1:
            p = g + rng.normal(0, 2 + i % 10, g.shape)
        elif kind == 2:
            p = cv2.imdecode(cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 20 + i % 60])[1], cv2.IMREAD_COLOR)
        else:
            p = g.astype(np.float64) * [1.04, 0.98, 1.0] + 2
        preds.append(np.clip(np.round(p), 0, 255).astype(np.uint8))
        gts.append(g)
    return preds, gts


def time_pyiqa(name: str, preds, gts, device) -> tuple[float, np.ndarray]:
    import torch

    from benchmarks.scoring.metrics import create_metric

    metric = create_metric(name, device)  # pyiqa.create_metric with our options, downloads refused
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255.0)  # noqa: E731
    t0 = time.perf_counter()
    with torch.no_grad():
        vals = [metric(t(p).to(device), t(g).to(device)).item() for p, g in zip(preds, gts, strict=True)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, np.array(vals)


def time_fast(name: str, preds, gts, device, batch_size: int) -> tuple[float, np.ndarray]:
    import torch

    from benchmarks.scoring.fast import fast_scores
    from benchmarks.scoring.metrics import METRICS as SPECS

    spec = SPECS[name]
    t0 = time.perf_counter()
    vals = fast_scores(spec.fast, spec.y_only, preds, gts, batch_size=batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, vals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.perf.scoring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=100, help="image pairs (default 100)")
    ap.add_argument("--size", type=int, default=512, help="side of the square images (default 512)")
    ap.add_argument("--conventions", default="y,rgb", help="y, rgb or y,rgb (default y,rgb)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ap.add_argument("--batch-size", type=int, default=8, help="images per batch of the fast path (default 8)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.scoring.metrics import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    convs = [c.strip() for c in args.conventions.split(",") if c.strip()]
    if not convs or any(c not in METRICS for c in convs):
        ap.error(f"--conventions: choose from {', '.join(METRICS)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {device}")
    t0 = time.perf_counter()
    preds, gts = make_pairs(args.images, args.size)
    made = time.perf_counter() - t0
    print(f"inputs: {args.images} pairs of {args.size}x{args.size} RGB uint8 (made in {made:.1f} s)")
    # warm-up: imports and first calls of both paths, untimed
    for name in (n for c in convs for n in METRICS[c]):
        time_pyiqa(name, preds[:1], gts[:1], device)
        time_fast(name, preds[:1], gts[:1], device, args.batch_size)
    tot_ref = tot_ours = 0.0
    print(f"{'metric':8s} {'pyiqa loop':>11s} {'ours':>9s} {'ratio':>7s}  max |ours - pyiqa|")
    for name in (n for c in convs for n in METRICS[c]):
        t_ref, ref = time_pyiqa(name, preds, gts, device)
        t_ours, ours = time_fast(name, preds, gts, device, args.batch_size)
        tot_ref, tot_ours = tot_ref + t_ref, tot_ours + t_ours
        print(f"{name:8s} {t_ref:10.2f}s {t_ours:8.2f}s {t_ref / t_ours:6.1f}x  {np.abs(ours - ref).max():.2e}")
    print(f"pyiqa loop: {tot_ref:.2f} s")
    print(f"ours: {tot_ours:.2f} s")
    print(f"ratio pyiqa/ours: {tot_ref / tot_ours:.2f}x")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
