"""Pair-synthesis throughput: rawsynth's generate path against an OSEDiff/Real-ESRGAN-style reference loader.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch/cv2 load their thread pools

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)

from rawsynth.generate import generate  # noqa: E402
from rawsynth.pipeline import SynthConfig  # noqa: E402
from rawsynth.sources import Source, bundled_sources  # noqa: E402

#: Stages of ours: (stage, [(module, attribute), ...]) — the functions whose time is that stage's (exclusive
#: of any other wrapped function they call). A name missing from the rawsynth being measured is skipped (some
#: are those of older versions, so the script also profiles a checkout from before the optimisations); a stage
#: none of whose functions exists is an error.
OUR_STAGES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("decode", (("rawsynth.generate", "_load_source"),)),
    ("crop", (("rawsynth.generate", "sample_crop"), ("rawsynth.generate", "apply_crop"))),
    ("ISP/noise sampling", (("rawsynth.pipeline", "sample_isp_params"), ("rawsynth.pipeline", "sample_noise_params"),
                            ("rawsynth.pipeline", "numpy_rng"), ("rawsynth.pipeline", "torch_generator"),
                            ("rawsynth.pipeline", "SynthConfig.profile"))),
    ("degradation", (("rawsynth.degrade", "sample_degradation"), ("rawsynth.degrade.ops", "apply_degradation_u8"),
                     ("rawsynth.degrade", "apply_degradation"))),
    ("IPTP", (("rawsynth.pipeline", "_srgb_to_linear"), ("rawsynth.pipeline", "srgb_to_linear_lut"))),
    ("MNS", (("rawsynth.pipeline", "mosaic"), ("rawsynth.pipeline", "add_noise"), ("rawsynth.pipeline", "quantize"))),
    ("encode PNGs", (("rawsynth.shards.fields", "encode_png16"), ("rawsynth.shards.fields", "encode_png8"))),
    ("encode other (hq→u16, JSON, checks)", (("rawsynth.shards", "encode_sample"),)),
    ("tar write (+fsync)", (("rawsynth.shards", "write_shard"),)),
)
REFERENCE_STAGES = ("decode", "crop", "kernels (basicsr, global RNG)", "degradation (filter2D/interpolate/DiffJPEG)",
                    "ISP/noise sampling", "IPTP (unprocess)", "MNS", "encode PNGs", "tar write")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.synthesis", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=24, help="timed samples per path (default 24)")
    p.add_argument("--crop", type=int, default=512, help="HQ crop side (default 512; a multiple of 16)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the sources and both paths' shards (kept); default: a temporary folder")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per path, alternating; the rates reported are their medians (default 3)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the extra, profiled run of ours that gives the per-stage breakdown")
    a = p.parse_args(argv)
    if a.samples < 1 or a.repeats < 1:
        p.error("--samples and --repeats must be >= 1")
    if a.crop < 16 or a.crop % 16:
        p.error("--crop must be a positive multiple of 16")
    return a


# --------------------------------------------------------------------------------------------- inputs


def make_sources(folder: Path, n: int, crop: int) -> list[Source]:
    """``n`` PNG files of ``crop × crop`` made from scikit-image's bundled photos (reflect-padded where smaller,
    centre-cropped, rotated by a quarter turn per pass over the photos: the first 32 files all differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = []
    for s in bundled_sources():
        a = cv2.imread(s.path, cv2.IMREAD_COLOR)
        h, w = a.shape[:2]
        a = np.pad(a, ((0, max(crop - h, 0)), (0, max(crop - w, 0)), (0, 0)), mode="reflect")
        h, w = a.shape[:2]
        t, lft = (h - crop) // 2, (w - crop) // 2
        bases.append(a[t:t + crop, lft:lft + crop])
    out = []
    for i in range(n):
        img = np.ascontiguousarray(np.rot90(bases[i % len(bases)], i // len(bases)))
        path = folder / f"src_{i:05d}.png"
        if not cv2.imwrite(str(path), img):
            raise OSError(f"could not write {path}")
        out.append(Source(path.name, str(path)))
    return out


# --------------------------------------------------------------------------------------------- ours


class StageTimer:
    """Wraps module attributes with perf-counter timers; a stage's time excludes nested wrapped calls."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, module: str, attr: str, stage: str) -> bool:
        """Time ``module.attr`` as ``stage``; ``False`` if there is no such function."""
        owner = importlib.import_module(module)
        *path, attr = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        if not hasattr(owner, attr):
            return False
        fn = getattr(owner, attr)
        timer = self

        def timed(*args, **kwargs):
            timer._stack.append(stage)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                timer._stack.pop()
                timer.seconds[stage] += dt
                if timer._stack:
                    timer.seconds[timer._stack[-1]] -= dt

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)
        return True

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def run_ours(sources: list[Source], out: Path, crop: int, seed: int, timer: StageTimer | None = None) -> dict:
    cfg = SynthConfig(crop=crop, mode="rddm")
    if timer is not None:
        for stage, targets in OUR_STAGES:
            if not [timer.wrap(owner, attr, stage) for owner, attr in targets].count(True):
                timer.restore()
                raise AttributeError(f"benchmark out of date: none of {targets} exists (stage {stage!r})")
    try:
        t0 = time.perf_counter()
        summary = generate(sources, out, cfg, seed=seed, shard_size=max(len(sources), 1), workers=1,
                           progress=False)
        seconds = time.perf_counter() - t0
    finally:
        if timer is not None:
            timer.restore()
    if summary.failures or summary.samples != len(sources):
        raise RuntimeError(f"ours: {summary.samples} samples, {summary.failures} failures")
    return {"seconds": seconds, "samples": summary.samples, "bytes": summary.bytes}


# --------------------------------------------------------------------------------------------- reference


class _Reference:
    """Real-ESRGAN's dataset + ``RealESRNetModel.feed_data`` (noise removed) and a plain torch unprocess/MNS."""

    def __init__(self, cfg: SynthConfig):
        from rawsynth.compat.basicsr import DiffJPEG, degradations

        self.cfg = cfg
        self.deg = degradations()
        self.jpeger = DiffJPEG(differentiable=False)
        pulse = np.zeros((21, 21), np.float32)
        pulse[10, 10] = 1
        self.pulse = torch.from_numpy(pulse)
        self.profile = cfg.profile()

    def _kernel(self, kc) -> np.ndarray:
        # RealESRGANDataset.__getitem__: random.choice of the size, sinc coin on numpy's global RNG, else
        # random_mixed_kernels; zero-padded to 21
        size = random.choice(kc.sizes)
        if np.random.uniform() < kc.sinc_prob:
            lo, hi = kc.sinc_omega_range if size < kc.sinc_large_size else kc.sinc_omega_range_large
            k = self.deg.circular_lowpass_kernel(np.random.uniform(lo, hi), size, pad_to=False)
        else:
            k = self.deg.random_mixed_kernels([t.value for t in kc.kernel_list], list(kc.kernel_prob), size,
                                              list(kc.sigma_range), list(kc.sigma_range), list(kc.rotation_range),
                                              list(kc.betag_range), list(kc.betap_range), noise_range=None)
        p = (21 - size) // 2
        return np.pad(k, ((p, p), (p, p)))

    def _kernels(self):
        d = self.cfg.degradation
        k1 = torch.FloatTensor(self._kernel(d.first.kernel))
        k2 = torch.FloatTensor(self._kernel(d.second.kernel))
        if np.random.uniform() < d.final.sinc_prob:
            size = random.choice(d.final.sinc_sizes)
            sinc = torch.FloatTensor(self.deg.circular_lowpass_kernel(np.random.uniform(*d.final.sinc_omega_range),
                                                                      size, pad_to=21))
        else:
            sinc = self.pulse
        return k1[None], k2[None], sinc[None]

    def _resize(self, x, sc, size_of):
        updown = random.choices(["up", "down", "keep"], sc.resize_prob)[0]
        if updown == "up":
            scale = np.random.uniform(1, sc.resize_range[1])
        elif updown == "down":
            scale = np.random.uniform(sc.resize_range[0], 1)
        else:
            scale = 1
        mode = random.choice([m.value for m in sc.resize_modes])
        return size_of(x, scale, mode)

    def _jpeg(self, x, jpeg_range, gen):
        # Real-ESRGAN: jpeg_p = out.new_zeros(b).uniform_(*jpeg_range); out = jpeger(clamp(out, 0, 1), jpeg_p)
        q = x.new_zeros(x.size(0)).uniform_(*jpeg_range, generator=gen)
        return self.jpeger(torch.clamp(x, 0, 1), quality=q)

    def degrade(self, gt: torch.Tensor, kernels, gen: torch.Generator) -> torch.Tensor:
        from rawsynth.compat.basicsr import filter2D

        d = self.cfg.degradation
        k1, k2, sinc = kernels
        ori_h, ori_w = gt.shape[2:4]
        s = d.scale
        # first order
        out = filter2D(gt, k1)
        out = self._resize(out, d.first, lambda x, f, m: F.interpolate(x, scale_factor=f, mode=m))
        out = self._jpeg(out, d.first.jpeg_range, gen)
        # second order
        if np.random.uniform() < d.second.blur_prob:
            out = filter2D(out, k2)
        out = self._resize(out, d.second, lambda x, f, m: F.interpolate(
            x, size=(int(ori_h / s * f), int(ori_w / s * f)), mode=m))
        # final: [resize + sinc] → JPEG, or JPEG → [resize + sinc]
        modes = [m.value for m in d.final.resize_modes]
        if np.random.uniform() < d.final.resize_first_prob:
            out = F.interpolate(out, size=(ori_h // s, ori_w // s), mode=random.choice(modes))
            out = filter2D(out, sinc)
            out = self._jpeg(out, d.final.jpeg_range, gen)
        else:
            out = self._jpeg(out, d.final.jpeg_range, gen)
            out = F.interpolate(out, size=(ori_h // s, ori_w // s), mode=random.choice(modes))
            out = filter2D(out, sinc)
        lq = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
        # resize back to the HQ size (RDDM pairs share the size) and round again
        lq = F.interpolate(lq, size=(ori_h, ori_w), mode=d.resize_back_mode.value)
        return torch.clamp((lq * 255.0).round(), 0, 255) / 255.0


def _seed_of(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) % (2**32)


def _png(a: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", a)  # OpenCV's default PNG settings, as a straightforward loader writes them
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _plain_unprocess(x: torch.Tensor, isp) -> torch.Tensor:
    """Brooks et al.'s unprocess as their code writes it, in plain dense torch (no rawsynth fast paths)."""
    x = x.clamp(0.0, 1.0)
    x = 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)  # inverse smoothstep
    x = x.clamp_min(1e-8) ** 2.2  # inverse gamma
    x = torch.einsum("ij,bjhw->bihw", torch.tensor(isp.rgb2cam, dtype=x.dtype), x)  # inverse CCM
    gains = torch.tensor([1.0 / isp.red_gain, 1.0, 1.0 / isp.blue_gain], dtype=x.dtype).view(1, 3, 1, 1)
    gains = gains / isp.rgb_gain
    gray = x.mean(dim=1, keepdim=True)
    mask = ((gray - 0.9).clamp_min(0.0) / 0.1) ** 2  # highlight-preserving inverse white balance
    return (x * torch.maximum(mask + (1.0 - mask) * gains, gains)).clamp(0.0, 1.0)


def _plain_mns(lin: torch.Tensor, pattern, noise, gen: torch.Generator, sensor) -> np.ndarray:
    """Mosaic by slicing, heteroscedastic Gaussian noise, quantisation to DN: plain dense torch."""
    h, w = lin.shape[-2:]
    m = torch.empty(h, w, dtype=lin.dtype)
    for dy in range(2):
        for dx in range(2):
            m[dy::2, dx::2] = lin[0, pattern.colors[dy][dx], dy::2, dx::2]
    m = m + torch.sqrt((noise.lambda_shot * m + noise.lambda_read).clamp_min(0.0)) * torch.randn(
        m.shape, generator=gen, dtype=m.dtype)
    dn = torch.round(m.double() * (sensor.white_level - sensor.black_level) + sensor.black_level)
    return dn.clamp(0, sensor.white_level).to(torch.int32).numpy().astype(np.uint16)


def run_reference(sources: list[Source], out: Path, crop: int, seed: int, ref: _Reference,
                  seconds: dict[str, float] | None = None) -> dict:
    from rawsynth.isp import sample_isp_params
    from rawsynth.mns import sample_noise_params

    cfg = ref.cfg
    st = seconds if seconds is not None else defaultdict(float)
    out.mkdir(parents=True, exist_ok=True)
    tar_path = out / "reference-000000.tar"
    t0 = time.perf_counter()
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with tarfile.open(tar_path, "w") as tar:
            for i, src in enumerate(sources):
                s = _seed_of(seed, i)
                np.random.seed(s)  # basicsr's samplers draw from the global RNGs; seeded here only
                random.seed(s)
                gen = torch.Generator().manual_seed(s)
                rng = np.random.default_rng(s)
                key = f"{i:07d}_0000"
                t = time.perf_counter()
                img = cv2.imread(src.path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
                t1 = time.perf_counter()
                st["decode"] += t1 - t
                h, w = img.shape[:2]
                top, left = random.randint(0, h - crop), random.randint(0, w - crop)
                img = np.ascontiguousarray(img[top:top + crop, left:left + crop])
                gt = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
                t2 = time.perf_counter()
                st["crop"] += t2 - t1
                kernels = ref._kernels()
                t3 = time.perf_counter()
                st["kernels (basicsr, global RNG)"] += t3 - t2
                with torch.no_grad():
                    lq = ref.degrade(gt, kernels, gen)
                    t4 = time.perf_counter()
                    st["degradation (filter2D/interpolate/DiffJPEG)"] += t4 - t3
                    isp = sample_isp_params(rng, cfg.isp)
                    pattern = cfg.patterns[int(rng.integers(len(cfg.patterns)))]
                    noise = sample_noise_params(rng, ref.profile)
                    t5 = time.perf_counter()
                    st["ISP/noise sampling"] += t5 - t4
                    hq_lin = _plain_unprocess(gt, isp)
                    lq_lin = _plain_unprocess(lq, isp)
                    t6 = time.perf_counter()
                    st["IPTP (unprocess)"] += t6 - t5
                    raw = _plain_mns(lq_lin, pattern, noise, gen, cfg.sensor)
                    t7 = time.perf_counter()
                    st["MNS"] += t7 - t6
                hq16 = np.round(hq_lin[0].permute(1, 2, 0).numpy().astype(np.float64) * 65535).astype(np.uint16)
                fields = {"raw.png": _png(raw), "hq.png": _png(np.ascontiguousarray(hq16[..., ::-1])),
                          "meta.json": json.dumps({"key": key, "pattern": pattern.value, "isp": isp.to_dict(),
                                                   "noise": noise.to_dict(), "sensor": cfg.sensor.to_dict(),
                                                   "crop": [top, left, crop, crop], "source": src.name},
                                                  sort_keys=True).encode()}
                t8 = time.perf_counter()
                st["encode PNGs"] += t8 - t7
                for name, data in fields.items():
                    ti = tarfile.TarInfo(f"{key}.{name}")
                    ti.size = len(data)
                    tar.addfile(ti, io.BytesIO(data))
                st["tar write"] += time.perf_counter() - t8
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "samples": len(sources), "bytes": tar_path.stat().st_size}


# --------------------------------------------------------------------------------------------- report


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _table(title: str, seconds: dict[str, float], order, n: int, total: float) -> list[str]:
    lines = [title, f"  {'stage':44s} {'ms/sample':>10s} {'share':>7s}"]
    rest = total
    for stage in order:
        v = seconds.get(stage, 0.0)
        rest -= v
        lines.append(f"  {stage:44s} {1e3 * v / n:10.2f} {100 * v / total:6.1f}%")
    lines.append(f"  {'other (loop, metadata, stats, manifest)':44s} {1e3 * rest / n:10.2f} {100 * rest / total:6.1f}%")
    lines.append(f"  {'total':44s} {1e3 * total / n:10.2f} {100.0:6.1f}%")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="rawsynth-perf-"))
    n, crop, reps = args.samples, args.crop, args.repeats
    try:
        root.mkdir(parents=True, exist_ok=True)
        for old in list(root.glob("ours*")) + list(root.glob("reference*")) + [root / "src"]:
            shutil.rmtree(old, ignore_errors=True)
        sources = make_sources(root / "src", n + 1, crop)
        warm, timed = sources[:1], sources[1:]
        print(f"rawsynth synthesis benchmark: {n} samples x {reps} repeat(s) per path, crop {crop}x{crop}, "
              f"seed {args.seed}, one thread (torch {torch.get_num_threads()}, cv2 {cv2.getNumThreads()}), "
              f"CPU: {_cpu_model()}, torch {torch.__version__}, OpenCV {cv2.__version__}")
        print(f"warm-up: one untimed sample per path first (imports, first calls, basicsr); load average {_load()}")
        ref = _Reference(SynthConfig(crop=crop, mode="rddm"))
        run_ours(warm, root / "ours-warmup", crop, args.seed)
        run_reference(warm, root / "reference-warmup", crop, args.seed, ref)

        ours_runs, ref_runs = [], []
        ref_seconds: dict[str, float] = defaultdict(float)
        for r in range(reps):  # alternate the paths so slow drifts of the machine hit both alike
            ours_runs.append(run_ours(timed, root / f"ours-{r}", crop, args.seed))
            ref_runs.append(run_reference(timed, root / f"reference-{r}", crop, args.seed, ref, ref_seconds))
            if args.out is None and r < reps - 1:
                shutil.rmtree(root / f"ours-{r}", ignore_errors=True)
                shutil.rmtree(root / f"reference-{r}", ignore_errors=True)

        def line(name: str, runs: list[dict]) -> tuple[float, float]:
            rates = [x["samples"] / x["seconds"] for x in runs]
            med = statistics.median(rates)
            each = ", ".join(f"{v:.2f}" for v in rates)
            print(f"{name:10s} {med:8.2f} pairs/s  ({1e3 / med:7.1f} ms/pair, {runs[-1]['bytes'] / n / 1e3:8.1f} kB "
                  f"shard bytes/pair; median of {len(rates)} runs: {each})")
            return med, max(rates)

        (r_ours, b_ours), (r_ref, b_ref) = line("ours:", ours_runs), line("reference:", ref_runs)
        ratio = r_ours / r_ref
        print(f"ratio ours/reference: {ratio:.2f}x of the medians, {b_ours / b_ref:.2f}x of the best runs "
              f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'}); load average {_load()}")

        if args.profile:
            timer = StageTimer()
            prof = run_ours(timed, root / "ours-profile", crop, args.seed, timer)
            print("\n".join(_table(f"ours, per stage (profiled run, {n / prof['seconds']:.2f} pairs/s with the "
                                   "stage timers):", timer.seconds, [s for s, _ in OUR_STAGES], n,
                                   prof["seconds"])))
        print("\n".join(_table(f"reference, per stage (its {reps} timed run(s)):", ref_seconds, REFERENCE_STAGES,
                               n * reps, sum(x["seconds"] for x in ref_runs))))
        from .noise_models import measure_noise_models, table

        print(table(measure_noise_models(crop, samples=10, seed=args.seed)))  # Eq. 11 vs the physics model
        return 0 if math.isfinite(ratio) else 1
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
