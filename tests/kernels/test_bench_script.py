"""Smoke test of ``python -m benchmarks.perf.kernels`` (timings are not checked)."""

import torch

from benchmarks.perf import kernels


def test_benchmark_runs_and_says_what_it_measured(capsys):
    assert kernels.main(["--batch", "2", "--size", "64", "--repeats", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    if torch.cuda.is_available():
        assert "bandwidth vs copy" in text and "speed-up" in text and "PTP forward + backward" in text
    else:
        assert "still owed" in text
