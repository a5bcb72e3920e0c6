"""The one-shot GPU kit's dry run (runs anywhere): environment check, steps within the budget, wheels listed."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.perf import gpu_check


def test_dry_run_lists_steps_and_wheels_and_exits_0(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "o"), "--dry-run", "--wheels", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for s in gpu_check.STEPS:
        assert s.name in text and " ".join(s.argv) in text
    for wheel in gpu_check.WHEELS.values():
        assert wheel in text
    assert "dry run: nothing was run" in text and not (tmp_path / "o").exists()
    assert sum(s.timeout_s for s in gpu_check.STEPS) <= gpu_check.BUDGET_S < 480  # under 8 minutes


def test_every_step_module_exists_and_parses_its_arguments():
    """Each step's module is importable here and accepts the kit's arguments (``--help`` style check through
    each parser would run models: the argv is checked against the module's parser instead)."""
    import importlib

    for s in gpu_check.STEPS:
        if s.argv[0] == "pytest":
            continue
        mod = importlib.import_module(s.argv[0])
        assert hasattr(mod, "main"), s.name
    from benchmarks.perf import gpu_synthesis, kernels

    a = kernels.parse_args(list(gpu_check.STEPS[1].argv[1:]))
    assert a.batch == 256 and a.warmup >= 3
    g = gpu_synthesis.parse_args(list(gpu_check.STEPS[2].argv[1:]))
    assert g.batch == [64, 256] and g.crop == 512 and g.warmup >= 3


def test_wheel_names_match_the_environment_check(tmp_path):
    for name in ("diffusers-0.36.0-py3-none-any.whl", "braceexpand-0.1.7-py2.py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"x" * 10)
    env = gpu_check.check_env(tmp_path)
    assert env["wheels_bytes"] == 20 and env["carry_ok"]
    assert "diffusers" not in env["missing_without_wheel"]


def test_without_a_gpu_the_real_run_refuses(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    p = subprocess.run([sys.executable, "-m", "benchmarks.perf.gpu_check", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--dry-run" in p.stdout
