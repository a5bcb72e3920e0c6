"""GPU kernel throughput: the fused IPTP + MNS and PTP Triton kernels against a device copy and the torch reference.

Run as ``python -m benchmarks.perf.kernels [--batch 64] [--size 512] [--repeats 20] [--warmup 3]``. Results and
their analysis: ``benchmarks/perf/RESULTS.md``.

On a CUDA device, in one run, on the same GPU (CUDA events; every figure is the median over ``--repeats`` runs
after ``--warmup`` untimed ones):

* **IPTP + MNS kernel** (:func:`rawsynth.kernels.iptp_mns`, 8-bit sRGB in, uint16 DN out, with and without the
  float32 linear HQ): the kernel alone (parameter tables built beforehand) and the whole call (tables and outputs
  built each time); pairs/s; effective bandwidth = bytes read + written (sRGB 3 B/px, DN 2 B/px, linear 12 B/px)
  / kernel time;
* **device copy** of the same number of bytes (``dst.copy_(src)`` of ``(read + written) / 2`` bytes, so the same
  traffic), its bandwidth, and the kernel's share of it (target ≥ 70 %);
* **torch reference** (:func:`rawsynth.kernels.iptp_mns_reference`) on the same batch and GPU, and the speed-up;
* **PTP forward + backward** (:func:`rawsynth.kernels.ptp`) against torch autograd through
  :func:`rawsynth.kernels.ptp_reference`.

Without a CUDA device it prints that the GPU figures are still owed and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--size", type=int, default=512, help="crop side (default 512; even)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per figure; medians reported (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (compilation, caches; default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and parameters (default 0)")
    a = p.parse_args(argv)
    if a.batch < 1 or a.repeats < 1 or a.warmup < 0 or a.size < 2 or a.size % 2:
        p.error("need --batch >= 1, --repeats >= 1, --warmup >= 0 and an even --size >= 2")
    return a


def cuda_time(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median seconds of ``fn()`` on the current CUDA stream (events around each call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _inputs(a: argparse.Namespace):
    from rawsynth.isp import sample_isp_params
    from rawsynth.mns import NoiseParams, Pattern, SensorParams, load_noise_profile, sample_noise_params
    from rawsynth.rng import derive_seed, numpy_rng

    g = torch.Generator(device="cuda").manual_seed(a.seed)
    srgb = torch.randint(0, 256, (a.batch, 3, a.size, a.size), generator=g, device="cuda", dtype=torch.uint8)
    keys = [f"{i:06d}" for i in range(a.batch)]
    isp = [sample_isp_params(numpy_rng(a.seed, k, "isp")) for k in keys]
    pats = [list(Pattern)[i % 4] for i in range(a.batch)]
    prof = load_noise_profile("default")
    noise: list[NoiseParams] = [sample_noise_params(numpy_rng(a.seed, k, "noise"), prof) for k in keys]
    seeds = [derive_seed(a.seed, k, "noise-field") for k in keys]
    return srgb, isp, pats, noise, SensorParams(), seeds


def bench_iptp_mns(a: argparse.Namespace) -> dict:
    from rawsynth.kernels import iptp_mns, iptp_mns_reference
    from rawsynth.kernels.iptp_mns import _plan

    srgb, isp, pats, noise, sensor, seeds = _inputs(a)
    b, _, h, w = srgb.shape
    px = b * h * w
    out = {}
    for linear in (False, True):
        run, _, _ = _plan(srgb, isp, pats, noise, sensor, seeds, linear)
        t_kernel = cuda_time(run, a.repeats, a.warmup)
        t_call = cuda_time(lambda lin=linear: iptp_mns(srgb, isp, pats, noise, sensor, seeds, lin, backend="triton"),
                           a.repeats, a.warmup)
        t_ref = cuda_time(lambda lin=linear: iptp_mns_reference(srgb, isp, pats, noise, sensor, seeds, lin),
                          max(a.repeats // 4, 1), 1)
        nbytes = px * (3 + 2 + (12 if linear else 0))
        half = nbytes // 2
        src = torch.empty(half, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        t_copy = cuda_time(lambda d=dst, s=src: d.copy_(s), a.repeats, a.warmup)
        out[linear] = dict(kernel=t_kernel, call=t_call, reference=t_ref, copy=t_copy, bytes=nbytes,
                           bw_kernel=nbytes / t_kernel, bw_copy=2 * half / t_copy)
        del src, dst
    return out


def bench_ptp(a: argparse.Namespace) -> dict:
    from rawsynth.isp import ISPBatch, sample_isp_params
    from rawsynth.kernels import ptp, ptp_reference

    g = torch.Generator(device="cuda").manual_seed(a.seed)
    p = ISPBatch.from_params([sample_isp_params(np.random.default_rng(i)) for i in range(a.batch)], device="cuda")
    x = (torch.rand((a.batch, 3, a.size, a.size), generator=g, device="cuda") * 1.1 - 0.05).requires_grad_()
    go = torch.randn(x.shape, generator=g, device="cuda")

    def step(fn):
        def run():
            x.grad = None
            fn(x, p).backward(go)
        return run

    t_k = cuda_time(step(lambda x, p: ptp(x, p, backend="triton")), a.repeats, a.warmup)
    t_r = cuda_time(step(ptp_reference), a.repeats, a.warmup)
    return dict(kernel=t_k, reference=t_r, bytes=x.numel() * 4 * 5)  # fwd: read x, write y; bwd: x, gy → gx


def main(argv=None) -> int:
    a = parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU figures (pairs/s at 512², the IPTP+MNS kernel's bandwidth against a device "
              "copy, the speed-ups over the torch reference, PTP forward+backward) are still owed; the kernels are "
              "verified on the CPU under Triton's interpreter by tests/kernels.")
        return 0
    import triton

    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"batch {a.batch} x 3 x {a.size} x {a.size}, uint8 sRGB in; medians of {a.repeats} runs\n")
    res = bench_iptp_mns(a)
    print(f"{'IPTP + MNS':34s} {'ms':>9s} {'pairs/s':>11s} {'GB/s':>9s}")
    for linear, r in res.items():
        tag = "DN + linear" if linear else "DN only"
        print(f"  kernel alone ({tag})".ljust(35) + f"{r['kernel'] * 1e3:9.3f} {a.batch / r['kernel']:11.0f} "
              f"{r['bw_kernel'] / 1e9:9.1f}")
        print(f"  whole call ({tag})".ljust(35) + f"{r['call'] * 1e3:9.3f} {a.batch / r['call']:11.0f}")
        print("  device copy, same bytes".ljust(35) + f"{r['copy'] * 1e3:9.3f} {'':11s} {r['bw_copy'] / 1e9:9.1f}")
        print(f"  torch reference ({tag})".ljust(35) + f"{r['reference'] * 1e3:9.3f} {a.batch / r['reference']:11.0f}")
        print(f"  -> bandwidth vs copy {r['bw_kernel'] / r['bw_copy']:.1%} (target >= 70%), speed-up over the "
              f"reference {r['reference'] / r['kernel']:.1f}x (kernel), {r['reference'] / r['call']:.1f}x (call)\n")
    r = bench_ptp(a)
    print(f"PTP forward + backward: fused {r['kernel'] * 1e3:.3f} ms ({r['bytes'] / r['kernel'] / 1e9:.0f} GB/s), "
          f"torch autograd {r['reference'] * 1e3:.3f} ms, speed-up {r['reference'] / r['kernel']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
