"""GPU kernel throughput: the fused IPTP + MNS and PTP Triton kernels against a device copy and the torch reference.
See ``docs/gpu.md``."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256, help="samples per batch (default 256)")
    p.add_argument("--size", type=int, default=512, help="crop side (default 512; even)")
    p.add_argument("--repeats", type=int, default=50, help="timed calls per figure; median and p10-p90 (default 50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (compilation, caches; default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and parameters (default 0)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    if a.batch < 1 or a.repeats < 1 or a.warmup < 0 or a.size < 2 or a.size % 2:
        p.error("need --batch >= 1, --repeats >= 1, --warmup >= 0 and an even --size >= 2")
    return a


def bench(fn: Callable[[], object], repeats: int, warmup: int) -> dict:
    """``fn``'s seconds on the GPU: ``warmup`` untimed calls, then ``triton.testing.do_bench`` (L2 flushed before
    each call, CUDA events around each) over ``repeats`` calls. ``{"median", "p10", "p90"}`` in seconds."""
    from triton.testing import do_bench

    for _ in range(max(warmup, 0)):
        fn()
    torch.cuda.synchronize()
    est = statistics.median(_events(fn, 3))  # ms per call; do_bench sizes its number of calls from `rep` ms
    t = do_bench(fn, warmup=est, rep=max(repeats, 1) * est, return_mode="all")
    t = sorted(x / 1e3 for x in t)
    return {"median": statistics.median(t), "p10": t[int(0.1 * (len(t) - 1))], "p90": t[int(0.9 * (len(t) - 1))],
            "n": len(t)}


def _events(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls, each after an L2 flush, CUDA events around the call alone."""
    cache = torch.empty(256 * 2**20 // 4, dtype=torch.int32, device="cuda")
    out = []
    for _ in range(repeats):
        cache.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return out


def cuda_time(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median seconds of ``fn()`` (see :func:`bench`)."""
    return bench(fn, repeats, warmup)["median"]


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


#: The IPTP + MNS variants timed: (name, writes the HQ linear from a second source, fast noise, noise).
VARIANTS = (("dn", False, False, True), ("dn-fast", False, True, True), ("pair", True, False, True),
            ("pair-fast", True, True, True), ("clean", False, False, False))


def bench_iptp_mns(a: argparse.Namespace) -> dict:
    from rawsynth.kernels import iptp_mns, iptp_mns_reference
    from rawsynth.kernels.iptp_mns import _plan
    from rawsynth.mns import NoiseParams

    srgb, isp, pats, noise, sensor, seeds = _inputs(a)
    hq = srgb.flip(-1).contiguous()
    b, _, h, w = srgb.shape
    px = b * h * w
    quiet = [NoiseParams(n.iso, 0.0, 0.0) for n in noise]
    out = {}
    for name, pair, fast, noisy in VARIANTS:
        nz = noise if noisy else quiet
        kw = dict(hq=hq if pair else None, fast_noise=fast)
        run, _, _ = _plan(srgb, isp, pats, nz, sensor, seeds, pair, **kw)
        t_kernel = bench(run, a.repeats, a.warmup)
        t_call = bench(lambda nz=nz, kw=kw: iptp_mns(srgb, isp, pats, nz, sensor, seeds, backend="triton", **kw),
                       a.repeats, a.warmup)
        nbytes = px * (3 + 2 + (3 + 12 if pair else 0))
        half = nbytes // 2
        src = torch.empty(half, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        t_copy = bench(lambda d=dst, s=src: d.copy_(s), a.repeats, a.warmup)
        out[name] = dict(kernel=t_kernel, call=t_call, copy=t_copy, bytes=nbytes,
                         bw_kernel=nbytes / t_kernel["median"], bw_copy=2 * half / t_copy["median"],
                         pairs_per_s=(b / t_kernel["median"]) if pair else None,
                         pairs_per_s_call=(b / t_call["median"]) if pair else None)
        del src, dst
    ref = bench(lambda: (iptp_mns_reference(srgb, isp, pats, noise, sensor, seeds),
                         iptp_mns_reference(hq, isp, pats, quiet, sensor, seeds, True)), max(a.repeats // 10, 3), 1)
    out["reference-pair"] = dict(call=ref, pairs_per_s_call=b / ref["median"])
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


def _ms(t: dict) -> str:
    return f"{t['median'] * 1e3:8.3f} [{t['p10'] * 1e3:.3f}-{t['p90'] * 1e3:.3f}]"


def main(argv=None) -> int:
    a = parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU figures (LQ+HQ pairs/s at 512², the IPTP+MNS kernel variants' bandwidth "
              "against a device copy, the speed-ups over the torch reference, PTP forward+backward) are still owed; "
              "the kernels are verified on the CPU under Triton's interpreter and compiled for sm_90 by "
              "tests/kernels.")
        return 0
    import json

    import triton

    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"batch {a.batch} x 3 x {a.size} x {a.size}, uint8 sRGB in; do_bench (L2 flushed), median "
          f"[p10-p90] of {a.repeats} calls after {a.warmup} warm-ups\n")
    res = bench_iptp_mns(a)
    print(f"{'IPTP + MNS':24s} {'kernel ms':>26s} {'call ms':>26s} {'GB/s':>7s} {'vs copy':>8s} {'pairs/s':>9s}")
    for name, r in res.items():
        if name == "reference-pair":
            continue
        pairs = f"{r['pairs_per_s']:9.0f}" if r["pairs_per_s"] else f"{'-':>9s}"
        print(f"  {name:22s} {_ms(r['kernel']):>26s} {_ms(r['call']):>26s} {r['bw_kernel'] / 1e9:7.0f} "
              f"{r['bw_kernel'] / r['bw_copy']:8.1%} {pairs}")
    ref = res["reference-pair"]
    print(f"  torch reference, LQ+HQ pair: {_ms(ref['call'])} ms, {ref['pairs_per_s_call']:.0f} pairs/s; speed-up "
          f"of the pair kernel {ref['call']['median'] / res['pair']['kernel']['median']:.1f}x")
    r = bench_ptp(a)
    print(f"PTP forward + backward: fused {r['kernel'] * 1e3:.3f} ms ({r['bytes'] / r['kernel'] / 1e9:.0f} GB/s), "
          f"torch autograd {r['reference'] * 1e3:.3f} ms, speed-up {r['reference'] / r['kernel']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "batch": a.batch, "size": a.size,
                       "iptp_mns": res, "ptp": r}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
