"""The shard reader's samples/s (:func:`rawsynth.data.make_loader`, 512² crops) against what a training step
consumes. See ``docs/benchmarks.md``."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf.loader", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=32, help="pairs to write and read (default 32, 4 shards)")
    p.add_argument("--crop", type=int, default=512, help="sample and crop side (default 512)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers (default 0 1 2)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16, RDDM's)")
    p.add_argument("--step-ms", type=float, default=760.0,
                   help="training step time in ms for --batch (default 760: an estimate, see the docstring)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs the readers would feed (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="passes per worker count (default 3)")
    p.add_argument("--out", type=Path, default=None, help="folder for the shards (default: temporary)")
    a = p.parse_args(argv)
    if a.samples < 4 or a.repeats < 1 or a.batch < 1 or a.step_ms <= 0:
        p.error("need --samples >= 4, --repeats >= 1, --batch >= 1, --step-ms > 0")
    return a


def write_shards(folder: Path, n: int, crop: int) -> list[str]:
    from benchmarks.perf.synthesis import make_sources
    from rawsynth.generate import generate
    from rawsynth.pipeline import SynthConfig

    sources = make_sources(folder / "src", n, crop)
    generate(sources, folder / "shards", SynthConfig(crop=crop), seed=0, shard_size=-(-n // 4), workers=1,
             progress=False)
    return sorted(str(p) for p in (folder / "shards").glob("shard-*.tar"))


def read_rate(urls: list[str], batch: int, workers: int, crop: int, repeats: int) -> tuple[float, list[float]]:
    from rawsynth.data import make_loader

    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = 0
        for b in make_loader(urls, batch, workers, crop=crop, shuffle=0):
            n += b["raw"].shape[0]
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates), rates


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(1)
    consume = a.batch / (a.step_ms / 1e3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.out or Path(tmp)
        t = time.perf_counter()
        urls = write_shards(folder, a.samples, a.crop)
        print(f"rawsynth shard reader: {a.samples} pairs of {a.crop}² in {len(urls)} shards (written in "
              f"{time.perf_counter() - t:.1f} s, untimed), batch {a.batch}, crop {a.crop}, {a.repeats} pass(es) per "
              f"setting, {os.cpu_count()} CPU(s), load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"training consumption (assumed step {a.step_ms:.0f} ms for batch {a.batch}): {consume:.0f} samples/s "
              f"per GPU, {consume * a.gpus:.0f} for {a.gpus} GPUs")
        for w in a.workers:
            if w > len(urls):
                print(f"workers {w}: skipped (only {len(urls)} shards)")
                continue
            rate, rates = read_rate(urls, a.batch, w, a.crop, a.repeats)
            per = rate / max(w, 1)
            print(f"workers {w}: {rate:8.1f} samples/s  = {rate / consume:.2f}x one GPU's consumption; at "
                  f"{per:.1f} samples/s per reading process, {consume / per:.1f} processes per GPU keep up (passes: "
                  + ", ".join(f"{r:.1f}" for r in rates) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
