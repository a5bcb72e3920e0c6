"""Issue 6's end-to-end check on the CPU from the command line, with tiny randomly initialised models:
rawsynth shards → ``rddm train`` a few steps (losses finite, the reconstruction loss falls on the fixed batch) →
checkpoint → ``rddm restore`` on a DNG written by rawsynth → an sRGB PNG of the DNG's size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rawsynth.io import read_srgb, write_dng
from rawsynth.isp import ISPParams
from rawsynth.mns import SensorParams
from rawsynth.shards import decode_sample, iter_shard

from .conftest import run_cli, write_yaml


@pytest.mark.slow
def test_shards_train_checkpoint_restore_dng(rddm_shards, sd21_folder, lpips_folder, tmp_path):
    from rddm.models.rvae import RVAE

    rvae = tmp_path / "rvae"
    RVAE.from_sd(sd21_folder).save_pretrained(rvae)
    # one shard of two 64x64 samples, batch 2, no crop or flip: every step sees the same batch
    cfg = write_yaml(tmp_path / "rddm.yaml", {
        "max_steps": 8, "batch_size": 2, "global_batch_size": None, "log_every": 1, "save_every": 4,
        "keep_checkpoints": 0, "tensorboard": False, "mixed_precision": "no",
        "data": {"crop": 64, "num_workers": 0, "shuffle": 0, "flips": False},
        "optim": {"lr": 1e-2, "max_grad_norm": None}, "reg_optim": {"lr": 1e-3},
        "model": {"sample_posterior": False, "accept_uncalibrated_scale": True},
        "loss": {"lpips_net": "alex"}})
    r = run_cli("train", "--config", str(cfg), "--out", "run", "--shards", str(rddm_shards), "--sd-model",
                str(sd21_folder), "--rvae", str(rvae), "--lpips-weights", str(lpips_folder), "--device", "cpu",
                "--no-progress", cwd=tmp_path, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in rows] == list(range(1, 9))
    assert all(math.isfinite(v) for m in rows for v in m.values() if isinstance(v, float))
    assert rows[-1]["mse_linear"] < rows[0]["mse_linear"], [m["mse_linear"] for m in rows]
    ckpt = run / "checkpoints" / "step-000008" / "rddm"
    assert (ckpt / "rddm_config.json").is_file()

    # a DNG written by rawsynth from a shard sample (its own pattern, levels, white balance and colour matrix)
    sample = decode_sample(next(iter_shard(sorted(rddm_shards.glob("*.tar"))[0])))
    m = sample["meta"]
    dng = tmp_path / "in" / "cam.dng"
    dng.parent.mkdir()
    write_dng(dng, sample["raw_dn"], m["pattern"], SensorParams.from_dict(m["sensor"]),
              ISPParams.from_dict(m["isp"]))
    r = run_cli("restore", str(dng), "--model", str(ckpt), "--out", "restored", "--device", "cpu", "--tile", "32",
                "--overlap", "8", "--no-progress", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 restored" in r.stdout
    out = read_srgb(tmp_path / "restored" / "cam.png")
    assert out.image.shape == (*sample["raw_dn"].shape, 3) and out.bit_depth == 8
    assert np.isfinite(out.image).all() and out.image.std() > 0
