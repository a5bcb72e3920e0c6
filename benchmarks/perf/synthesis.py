"""Pair-synthesis throughput: rawsynth's generate path against an OSEDiff/Real-ESRGAN-style reference loader.
See ``docs/benchmarks.md``."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch/cv2 load their thread pools

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)

from rawsynth.generate import generate  # noqa: E402
from rawsynth.pipeline import SynthConfig  # noqa: E402
from rawsynth.sources import Source, bundled_sources  # noqa: E402

from .synthesis_reference import (REFERENCE_STAGES, _plain_mns, _plain_unprocess, _Reference,  # noqa: E402,F401
                                  run_reference)
from .synthesis_stages import OUR_STAGES, StageTimer, install, unseen_stages  # noqa: E402,F401

#: Member codecs of ours (``SynthConfig.members``) → the name printed; the first is rawsynth's default.
CODECS = {"npy": "npy", "png": "png16"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.synthesis", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=24, help="timed samples per path (default 24)")
    p.add_argument("--crop", type=int, default=512, help="HQ crop side (default 512; a multiple of 16)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the sources and both paths' shards (kept); default: a temporary folder")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed rounds (every codec of ours, then the reference); the rates reported are their "
                        "medians (default 3)")
    p.add_argument("--members", nargs="+", choices=sorted(CODECS), default=list(CODECS),
                   help="member codecs of ours to time (default: npy png; npy is rawsynth's default)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the extra, profiled run of ours that gives the per-stage breakdown")
    a = p.parse_args(argv)
    if a.samples < 1 or a.repeats < 1:
        p.error("--samples and --repeats must be >= 1")
    if a.crop < 16 or a.crop % 16:
        p.error("--crop must be a positive multiple of 16")
    a.members = list(dict.fromkeys(a.members))
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


def run_ours(sources: list[Source], out: Path, crop: int, seed: int, timer: StageTimer | None = None,
             members: str = "npy") -> dict:
    """:func:`rawsynth.generate.generate` of ``sources`` into ``out`` (one shard, one worker); ``members``: the
    codec of the mosaic and HQ. With ``timer``, its stage wrappers are installed for the run."""
    cfg = SynthConfig(crop=crop, mode="rddm", members=members)
    if timer is not None:
        install(timer)
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


def _rates(runs: list[dict]) -> list[float]:
    return [x["samples"] / x["seconds"] for x in runs]


def _rate_line(name: str, runs: list[dict], n: int) -> str:
    rates = _rates(runs)
    med = statistics.median(rates)
    each = ", ".join(f"{v:.2f}" for v in rates)
    return (f"{name:18s} {med:8.2f} pairs/s  ({1e3 / med:7.1f} ms/pair, {runs[-1]['bytes'] / n / 1e3:8.1f} kB "
            f"shard bytes/pair; median of {len(rates)} runs: {each})")


def ratio_line(name: str, ours: list[dict], ref: list[dict]) -> tuple[str, float]:
    """The ratio of the median rates, of the best runs, and of each round's two runs (made back to back, under the
    same load: their spread is the honest error bar on a shared machine)."""
    a, b = _rates(ours), _rates(ref)
    ratio = statistics.median(a) / statistics.median(b)
    rounds = [x / y for x, y in zip(a, b)]
    return (f"ratio {name}/reference: {ratio:.2f}x of the medians, {max(a) / max(b):.2f}x of the best runs, "
            f"per round {min(rounds):.2f}-{max(rounds):.2f}x ({', '.join(f'{r:.2f}' for r in rounds)}) "
            f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'})"), ratio


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
        print(f"rawsynth synthesis benchmark: {n} samples x {reps} round(s), ours with member codec(s) "
              f"{', '.join(CODECS[m] for m in args.members)}, crop {crop}x{crop}, seed {args.seed}, one thread "
              f"(torch {torch.get_num_threads()}, cv2 {cv2.getNumThreads()}), CPU: {_cpu_model()}, "
              f"torch {torch.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}")
        print(f"warm-up: one untimed sample per path first (imports, first calls, basicsr); load average {_load()}")
        ref = _Reference(SynthConfig(crop=crop, mode="rddm"))
        for m in args.members:
            run_ours(warm, root / f"ours-warmup-{m}", crop, args.seed, members=m)
        run_reference(warm, root / "reference-warmup", crop, args.seed, ref)

        ours_runs: dict[str, list[dict]] = {m: [] for m in args.members}
        ref_runs: list[dict] = []
        ref_seconds: dict[str, float] = defaultdict(float)
        for r in range(reps):  # alternate the paths so slow drifts of the machine hit both alike
            for m in args.members:
                ours_runs[m].append(run_ours(timed, root / f"ours-{m}-{r}", crop, args.seed, members=m))
            ref_runs.append(run_reference(timed, root / f"reference-{r}", crop, args.seed, ref, ref_seconds))
            if args.out is None and r < reps - 1:
                for m in args.members:
                    shutil.rmtree(root / f"ours-{m}-{r}", ignore_errors=True)
                shutil.rmtree(root / f"reference-{r}", ignore_errors=True)

        for m in args.members:
            print(_rate_line(f"ours [{CODECS[m]}]:", ours_runs[m], n))
        print(_rate_line("reference:", ref_runs, n))
        ratios = []
        for m in args.members:
            text, ratio = ratio_line(f"ours [{CODECS[m]}]", ours_runs[m], ref_runs)
            print(text)
            ratios.append(ratio)
        print(f"load average after the timed rounds: {_load()}")

        if args.profile:
            for m in args.members:
                timer = StageTimer()
                prof = run_ours(timed, root / f"ours-profile-{m}", crop, args.seed, timer, members=m)
                print("\n".join(_table(f"ours [{CODECS[m]}], per stage (profiled run, {n / prof['seconds']:.2f} "
                                       "pairs/s with the stage timers):", timer.seconds,
                                       [s for s, _ in OUR_STAGES], n, prof["seconds"])))
                unseen = unseen_stages(timer)
                if unseen:
                    print(f"WARNING: the stage timers saw no call of {unseen}: benchmarks/perf/synthesis_stages.py "
                          "is out of date with rawsynth (their time is in 'other')")
        print("\n".join(_table(f"reference, per stage (its {reps} timed run(s)):", ref_seconds, REFERENCE_STAGES,
                               n * reps, sum(x["seconds"] for x in ref_runs))))
        from .noise_models import measure_noise_models, table

        print(table(measure_noise_models(crop, samples=10, seed=args.seed)))  # Eq. 11 vs the physics model
        return 0 if all(math.isfinite(x) for x in ratios) else 1
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
