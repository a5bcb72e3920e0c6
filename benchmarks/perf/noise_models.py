"""Cost per sample of the sensor-noise models: paper Eq. 11 (Gaussian) against the physics model, then the
sensor encoding. See ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from rawsynth.mns import (SensorParams, add_noise, apply_physics_noise, load_noise_profile, quantize,
                          sample_noise_params, sample_physics_params)

__all__ = ["measure_noise_models", "main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_noise_models(crop: int = 512, samples: int = 20, seed: int = 0, device: str = "cpu",
                         camera: str = "SonyA7S2") -> dict:
    """Median milliseconds per ``crop²`` sample of each model (noise + quantisation), and their ratio.

    Returns:
        ``{"eq11_ms", "physics_ms", "physics_gaussian_ms", "ratio", "crop", "samples", "device"}``.
    """
    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    clean = torch.from_numpy(rng.uniform(0, 1, (1, 1, crop, crop)).astype(np.float32)).to(dev)
    eq_prof, cam = load_noise_profile("default"), load_noise_profile(camera)
    sensor12, sensor_cam = SensorParams(), cam.camera.sensor()
    gauss = type(cam)(**{**cam.__dict__, "read_model": "gaussian", "sigma_gauss": cam.sigma_tl})

    def eq11(g):
        return quantize(add_noise(clean, sample_noise_params(rng, eq_prof), g), sensor12)

    def physics(g, prof=cam):
        return quantize(apply_physics_noise(clean, sample_physics_params(rng, prof), sensor_cam, "RGGB", g),
                        sensor_cam)

    out = {}
    for name, fn in (("eq11_ms", eq11), ("physics_ms", physics),
                     ("physics_gaussian_ms", lambda g: physics(g, gauss))):
        g = torch.Generator(device=dev)
        g.manual_seed(seed)
        fn(g)  # warm-up
        times = []
        for _ in range(samples):
            _sync(dev)
            t = time.perf_counter()
            fn(g)
            _sync(dev)
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = statistics.median(times)
    out.update(ratio=out["physics_ms"] / out["eq11_ms"], crop=crop, samples=samples, device=str(dev))
    return out


def table(r: dict) -> str:
    return (f"noise models, per {r['crop']}x{r['crop']} sample on {r['device']} (noise + quantisation, median of "
            f"{r['samples']}):\n"
            f"  Eq. 11 Gaussian (default)           {r['eq11_ms']:8.2f} ms\n"
            f"  physics, Tukey-lambda read (ELD)     {r['physics_ms']:8.2f} ms  ({r['ratio']:.2f}x Eq. 11)\n"
            f"  physics, Gaussian read               {r['physics_gaussian_ms']:8.2f} ms")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.noise_models", description=__doc__.split("\n\n")[0])
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the synthesis benchmark)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(table(measure_noise_models(args.crop, args.samples, args.seed, args.device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
