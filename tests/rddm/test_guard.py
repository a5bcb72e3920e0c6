"""The non-finite guard (issue 16): a step with a non-finite loss or gradient norm moves no weight and is counted;
``max_nonfinite`` in a row stop the CLI with one line naming the step (exit 2, no traceback); every saved
safetensors stays finite and pruning keeps the last finite checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rddm.errors import TrainingDivergedError
from rddm.train.distributed import DistEnv
from rddm.train.guard import NonFiniteGuard, guarded_step

from .conftest import run_cli, tiny_train_config, write_yaml

ENV = DistEnv(0, 1, 0, torch.device("cpu"))


def _model_and_opt():
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    return m, opt, torch.amp.GradScaler("cpu", enabled=False)


def test_a_non_finite_gradient_moves_nothing_and_is_counted():
    m, opt, scaler = _model_and_opt()
    guard = NonFiniteGuard(ENV, max_consecutive=2)
    loss = m(torch.ones(2, 4)).sum()
    loss.backward()
    norm, ok = guarded_step(opt, scaler, None, loss, guard)
    assert ok and math.isfinite(float(norm))
    guard.end_step(1, not ok)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    moments = {k: v.clone() for k, v in opt.state[m.weight].items()}
    loss = m(torch.ones(2, 4)).sum()
    loss.backward()
    m.weight.grad[0, 0] = float("nan")  # one element: unguarded, AdamW would make every weight of the row NaN
    norm, ok = guarded_step(opt, scaler, 1.0, loss, guard)
    assert not ok and not math.isfinite(float(norm))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in opt.state[m.weight].items())
    assert m.weight.grad is None
    guard.end_step(2, True)
    assert guard.skipped == 1
    guard.end_step(3, False)  # a good step resets the run
    guard.end_step(4, True)
    with pytest.raises(TrainingDivergedError, match=r"2 steps in a row \(4\.\.5\).*stopped at step 5"):
        guard.end_step(5, True)
    _, ok = guarded_step(opt, scaler, None, torch.tensor(float("inf")), guard)  # a non-finite loss alone
    assert not ok


def test_unguarded_adamw_would_have_spread_the_nan():
    """The property the guard protects: stepping AdamW on one NaN gradient element poisons the weights."""
    m, opt, _ = _model_and_opt()
    m(torch.ones(2, 4)).sum().backward()
    m.weight.grad[0, 0] = float("nan")
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    assert not torch.isfinite(m.weight).all() and not torch.isfinite(m.weight).any()


def test_cli_run_with_lr_1e12_stops_with_one_line_and_finite_checkpoints(shards, tmp_path):
    from safetensors.torch import load_file

    cfg = write_yaml(tmp_path / "c.yaml", tiny_train_config(
        "ddnet", max_steps=40, save_every=1, keep_checkpoints=2, max_nonfinite=3, tensorboard=True,
        optim={"lr": 1e12, "lr_scheduler": "constant", "warmup_steps": 0}))
    r = run_cli("train-ddnet", "--config", str(cfg), "--out", "run", "--shards", str(shards), "--device", "cpu",
                "--no-progress", cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr
    line = [ln for ln in err if "error:" in ln]
    assert len(line) == 1 and "3 steps in a row" in line[0] and "stopped at step" in line[0], r.stderr
    stop = int(line[0].split("stopped at step ")[1].split()[0])
    assert stop < 40
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    bad = [m["step"] for m in rows if m["nonfinite"] == 1.0]
    assert bad[-3:] == [stop - 2, stop - 1, stop] and rows[-1]["nonfinite_skipped"] == len(bad)
    ckpts = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts, "no checkpoint kept"
    files = list((tmp_path / "run").rglob("*.safetensors"))
    assert files
    for f in files:
        assert all(torch.isfinite(t).all() for t in load_file(str(f)).values()), f
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "run" / "logs"))
    ea.Reload()
    assert [e.step for e in ea.Scalars("train/nonfinite") if e.value == 1.0][-3:] == bad[-3:]
