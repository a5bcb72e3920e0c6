"""Package hygiene: a light ``import rddm``, the ``python -m rddm`` entry point, the docstring examples, and the
DDNet-vs-bilinear measurement script (a small, fast version of it)."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys

import pytest

from .conftest import ROOT, run_cli


def test_import_rddm_is_light():
    code = ("import sys, rddm, rddm.cli, rddm.config, rddm.errors; "
            "heavy = [m for m in ('torch', 'diffusers', 'peft', 'webdataset') if m in sys.modules]; "
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_python_m_rddm_help_and_version(tmp_path):
    r = run_cli("--help", cwd=tmp_path)
    assert r.returncode == 0
    for cmd in ("train-ddnet", "train-rvae", "calibrate-latent-scale", "config"):
        assert cmd in r.stdout
    assert run_cli("--version", cwd=tmp_path).stdout.startswith("rddm ")
    bad = run_cli("train-ddnet", cwd=tmp_path)  # --out missing: argparse's own usage error
    assert bad.returncode == 2 and "--out" in bad.stderr


@pytest.mark.parametrize("module", ["rddm.losses", "rddm.models.ddnet", "rddm.models.rvae"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_short_training_beats_bilinear_on_held_out_photos(tmp_path, capsys):
    """A few seconds of training on 6 photos; held out: 2 other photos (other seed too). Deterministic."""
    from rddm.scripts import ddnet_vs_bilinear

    assert ddnet_vs_bilinear.main(["--out", str(tmp_path), "--steps", "60", "--batch-size", "4", "--train-crop",
                                   "48", "--sample-size", "64", "--train-crops", "4", "--test-crops", "4",
                                   "--lr", "2e-3", "--channels", "16,32"]) == 0
    result = json.loads((tmp_path / "ddnet_vs_bilinear.json").read_text())
    mean = result["mean"]
    assert result["samples"] == 8
    assert mean["ddnet_linear"] > mean["bilinear_linear"] + 0.5
    assert mean["ddnet_srgb"] > mean["bilinear_srgb"]
    keys = {r["key"] for r in result["per_sample"]}
    assert len(keys) == 8
    capsys.readouterr()


def test_memory_script_runs_a_full_rddm_training_step(tmp_path, capsys):
    """``rddm.scripts.memory --stage rddm`` at tiny size: every term of Eq. 6 and the regulariser step run, and the
    parameter counts are the model's own (built independently here)."""
    import math

    import torch

    from rddm.lpips import LPIPS
    from rddm.restore.memory import build_model
    from rddm.scripts import memory
    from rddm.vsd import VSDRegularizer

    assert memory.main(["--stage", "rddm", "--arch", "tiny", "--size", "32", "--batch-size", "2",
                        "--steps", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = build_model("tiny")
    vsd = VSDRegularizer(model.unet, model.alphas_cumprod)
    assert out["trainable_params"] == sum(p.numel() for p in model.trainable_parameters())
    assert out["vsd_trainable_params"] == sum(p.numel() for p in vsd.trainable_parameters()) > 0
    assert out["loss_terms"] == ["mse_linear", "mse_srgb", "lpips", "vsd"]
    assert set(out["last_losses"]) == {"mse_linear", "mse_srgb", "lpips", "vsd", "loss", "diffusion", "nonfinite"}
    assert all(math.isfinite(v) for v in out["last_losses"].values())
    assert out["peak_memory"]["cpu_peak_rss_mib"] >= out["memory_before_models"]["cpu_peak_rss_mib"] > 0
    # the random LPIPS weights go through LPIPS.from_folder (the training code's loading path) unchanged
    torch.manual_seed(3)
    ref = LPIPS("vgg")
    got = LPIPS.from_folder(memory.write_random_lpips(tmp_path, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), got.state_dict().values(), strict=True))
