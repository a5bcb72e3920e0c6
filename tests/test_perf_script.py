"""Smoke test of the synthesis benchmark script (``python -m benchmarks.perf.synthesis``); timings are not checked."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_prints_both_rates_and_the_ratio(tmp_path):
    out = tmp_path / "perf"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.perf.synthesis", "--samples", "1", "--crop", "64",
                           "--repeats", "1", "--seed", "3", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    # both member codecs of ours (npy: the default; png16: --members png) against the one reference, each ratio
    # with its per-round spread (both sides of a round run back to back, under the same load)
    for codec in ("npy", "png16"):
        ours = re.search(rf"^ours \[{codec}\]:\s+([0-9.]+) pairs/s .*?([0-9.]+) kB shard bytes/pair", text, re.M)
        ratio = re.search(rf"^ratio ours \[{codec}\]/reference: ([0-9.]+)x of the medians, .* per round "
                          r"([0-9.]+)-([0-9.]+)x", text, re.M)
        assert ours and ratio, text
        assert float(ours.group(1)) > 0 and float(ours.group(2)) > 0
        assert 0 < float(ratio.group(2)) <= float(ratio.group(3))
    ref = re.search(r"^reference:\s+([0-9.]+) pairs/s", text, re.M)
    assert ref and float(ref.group(1)) > 0, text
    # the per-stage tables ran, and the stage timers saw a call of every stage (none out of date with rawsynth)
    assert "WARNING" not in text, text
    for stage in ("decode", "degradation", "IPTP", "MNS", "encode members (npy/PNG)", "encode PNGs", "tar write"):
        assert re.search(rf"^  {re.escape(stage)}", text, re.M), stage
    # the noise-model table: Eq. 11 and the physics model per sample (issue 18)
    phys = re.search(r"^  physics, Tukey-lambda read \(ELD\)\s+([0-9.]+) ms  \(([0-9.]+)x Eq. 11\)", text, re.M)
    assert phys and float(phys.group(1)) > 0 and float(phys.group(2)) > 0, text
    # both paths wrote a shard with the sample in it
    for codec in ("npy", "png"):
        assert len(list((out / f"ours-{codec}-0").glob("shard-*.tar"))) == 1
    assert (out / "reference-0" / "reference-000000.tar").stat().st_size > 0
