"""Pairs/s of the on-the-fly GPU path (batched degradation + fused IPTP+MNS) at 512², with per-sample
recipes. See ``docs/gpu.md``."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.gpu_synthesis", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default: 16 64 on CUDA, 4 on CPU)")
    p.add_argument("--crop", type=int, default=512, help="crop side (default 512; a multiple of 8)")
    p.add_argument("--batches", type=int, default=None, help="timed batches per size (default 10 on CUDA, 2 on CPU)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up batches per size, new recipes each (default 3)")
    p.add_argument("--jpeg", default="auto", choices=("auto", "tensor", "diffjpeg", "nvjpeg", "libjpeg"),
                   help="JPEG codec (default auto: tensor on CUDA)")
    p.add_argument("--blur", default="auto", choices=("auto", "conv", "fft"), help="blur method (default auto)")
    p.add_argument("--blur-sweep", action="store_true", help="also time conv vs FFT blur per kernel size")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.crop < 16 or a.crop % 8:
        p.error("--crop must be a multiple of 8, >= 16")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    return a


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _crops(n: int, crop: int) -> torch.Tensor:
    import cv2

    from rawsynth.sources import bundled_sources

    out = []
    for s in sorted(bundled_sources()):
        a = cv2.cvtColor(cv2.imread(s.path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        a = np.pad(a, ((0, max(crop - a.shape[0], 0)), (0, max(crop - a.shape[1], 0)), (0, 0)), mode="reflect")
        out.append(torch.from_numpy(np.ascontiguousarray(a[:crop, :crop])).permute(2, 0, 1))
    return torch.stack([out[i % len(out)] for i in range(n)])


def spread(values: list[float]) -> dict:
    """Median, min, max and the 10th/90th percentiles of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}


def time_batches(synth, srgb: torch.Tensor, keys_of, n_batches: int, warmup: int = 3) -> dict:
    """Pairs/s over ``n_batches`` batches after ``warmup`` warm-up batches (new recipes, so new canvas sizes,
    every batch): median and spread, and the degradation's share of the timed batches."""
    from rawsynth.degrade.gpu import degrade_batch_gpu
    from rawsynth.pipeline import sample_recipe

    dev = synth.device
    b, _, h, w = srgb.shape
    x = srgb.to(dev)
    rates, deg_s, tot_s = [], 0.0, 0.0
    for it in range(warmup + n_batches):
        keys = keys_of(it)
        recipes = [sample_recipe(synth.seed, k, synth.config, (h, w)) for k in keys]
        _sync(dev)
        t0 = time.perf_counter()
        # the batched path on every device (OnTheFlySynth.degrade would run the CPU chain on CPU tensors)
        lq = degrade_batch_gpu(x.float() / 255.0, [r.degradation for r in recipes], blur=synth.blur,
                               jpeg=synth.jpeg, as_uint8=True)
        _sync(dev)
        t1 = time.perf_counter()
        synth.pairs(x, lq, recipes, keys)
        _sync(dev)
        t2 = time.perf_counter()
        if it >= warmup:  # warm-ups: kernel compilation, cuFFT plans, codec handles, allocator growth
            rates.append(b / (t2 - t0))
            deg_s += t1 - t0
            tot_s += t2 - t0
    return {"rate": statistics.median(rates), "deg_share": deg_s / tot_s, "rates": rates, "spread": spread(rates)}


def blur_sweep(dev: torch.device, crop: int, batch: int) -> list[str]:
    from rawsynth.degrade.gpu import blur_batch

    lines = [f"blur sweep at {crop}², batch {batch} (ms per batch, best of 3): k  conv  fft"]
    x = torch.rand(batch, 3, crop, crop, device=dev)
    sizes = [(crop, crop)] * batch
    for k in range(7, 22, 2):
        ks = [np.full((k, k), 1.0 / k**2, dtype=np.float32)] * batch
        ms = {}
        for m in ("conv", "fft"):
            blur_batch(x, sizes, ks, m)
            best = float("inf")
            for _ in range(3):
                _sync(dev)
                t = time.perf_counter()
                blur_batch(x, sizes, ks, m)
                _sync(dev)
                best = min(best, time.perf_counter() - t)
            ms[m] = best * 1e3
        lines.append(f"  {k:2d}  {ms['conv']:8.2f}  {ms['fft']:8.2f}  {'fft' if ms['fft'] < ms['conv'] else 'conv'}")
    return lines


def main(argv=None) -> int:
    a = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cpu":
        torch.set_num_threads(1)
    from rawsynth.onthefly import OnTheFlySynth
    from rawsynth.pipeline import SynthConfig

    sizes = a.batch or ([64, 256] if dev.type == "cuda" else [4])
    n_batches = a.batches or (10 if dev.type == "cuda" else 2)
    cfg = SynthConfig(crop=a.crop)
    synth = OnTheFlySynth(cfg, a.seed, dev, blur=a.blur, jpeg=a.jpeg)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU, one thread"
    print(f"rawsynth GPU-path synthesis: rddm pairs at {a.crop}x{a.crop} on {name}, torch {torch.__version__}, "
          f"jpeg={a.jpeg}, blur={a.blur}, {n_batches} timed batch(es) after {a.warmup} warm-up batch(es)")
    for b in sizes:
        srgb = _crops(b, a.crop)
        r = time_batches(synth, srgb, lambda it, b=b: [f"{it:07d}_{i:04d}" for i in range(b)], n_batches,
                         a.warmup)
        s = r["spread"]
        print(f"batch {b:4d}: {r['rate']:9.1f} pairs/s median (min {s['min']:.1f}, p10–p90 {s['p10']:.1f}–"
              f"{s['p90']:.1f}, max {s['max']:.1f}; {1e3 / r['rate']:.2f} ms/pair; degradation "
              f"{100 * r['deg_share']:.0f}% of the time, IPTP+MNS the rest; runs: "
              + ", ".join(f"{v:.1f}" for v in r["rates"]) + ")")
    if dev.type == "cuda":
        print("target: >= 2000 pairs/s at 512² on an H200-class GPU")
    else:
        print("no CUDA device: these are CPU figures of the device-agnostic batched path (libjpeg, torch IPTP+MNS); "
              "the GPU figures are still owed (run this script on a CUDA machine)")
    if a.blur_sweep:
        print("\n".join(blur_sweep(dev, a.crop, sizes[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
