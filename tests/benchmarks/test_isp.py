"""Two-stage inputs: the classical ISP (bilinear / OpenCV edge-aware demosaic + PTP) and the DDNet hook."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from benchmarks.bench import Bench
from benchmarks.cli import main
from benchmarks.errors import MissingDependencyError
from benchmarks.files import read_png8
from benchmarks.isp import Demosaic, demosaic, develop_linear, develop_raw, load_ddnet, make_isp
from rawsynth.isp import ISPParams, fixed_isp_params, process
from rawsynth.mns import Pattern, SensorParams, demosaic_bilinear, mosaic, normalize, quantize

from .conftest import photo


@pytest.mark.parametrize("method", list(Demosaic))
@pytest.mark.parametrize("pattern", list(Pattern))
def test_flat_colour_is_recovered_for_every_pattern(method, pattern):
    colour = torch.tensor([0.7, 0.4, 0.15]).view(1, 3, 1, 1)
    raw = mosaic(colour.expand(1, 3, 16, 16).contiguous(), pattern)
    out = demosaic(raw, pattern, method)
    assert out.shape == (1, 3, 16, 16)
    assert torch.allclose(out[..., 2:-2, 2:-2], colour.expand(1, 3, 12, 12), atol=2e-5)


def test_edge_aware_demosaic_is_close_to_the_truth_on_a_photo():
    lin = torch.from_numpy(photo(1, 128, 128)).permute(2, 0, 1)[None].float().div(255) ** 2.2
    for p in Pattern:
        raw = mosaic(lin, p)
        err_ea = (demosaic(raw, p, "opencv-ea") - lin)[..., 4:-4, 4:-4].abs().mean()
        err_bl = (demosaic(raw, p, "bilinear") - lin)[..., 4:-4, 4:-4].abs().mean()
        assert err_ea < 0.02 and err_bl < 0.02


def test_develop_raw_is_normalise_demosaic_ptp(div2k_bench):
    b = Bench.load(div2k_bench)
    k = b.keys[1]
    meta = b.meta(k)
    dn = b.raw_dn(k)
    sensor, isp = SensorParams.from_dict(meta["sensor"]), ISPParams.from_dict(meta["isp"])
    ref = process(demosaic_bilinear(normalize(torch.from_numpy(dn.astype(np.int32))[None, None], sensor),
                                    meta["pattern"]).clamp(0, 1), isp)
    ref8 = np.round(ref[0].permute(1, 2, 0).numpy().astype(np.float64) * 255).astype(np.uint8)
    assert np.abs(develop_raw(dn, meta).astype(int) - ref8).max() <= 1


def test_noise_free_mosaic_develops_close_to_the_truth():
    isp, sensor = fixed_isp_params(), SensorParams()
    srgb = torch.from_numpy(photo(0, 128, 128)).permute(2, 0, 1)[None].float() / 255
    from rawsynth.isp import unprocess

    lin = unprocess(srgb, isp)
    dn = quantize(mosaic(lin, "RGGB"), sensor)[0, 0].numpy()
    meta = {"pattern": "RGGB", "sensor": sensor.to_dict(), "isp": isp.to_dict()}
    truth = develop_linear(lin, isp).astype(float)
    for m in Demosaic:
        mse = ((develop_raw(dn, meta, m).astype(float) - truth) ** 2)[4:-4, 4:-4].mean()
        assert 10 * np.log10(255**2 / mse) > 25


def test_cli_isp_writes_one_png_per_image(div2k_bench, tmp_path, capsys):
    out = tmp_path / "isp"
    assert main(["isp", "--bench", str(div2k_bench), "--out", str(out), "--demosaic", "opencv-ea"]) == 0
    b = Bench.load(div2k_bench)
    assert sorted(p.stem for p in out.glob("*.png")) == b.keys
    assert read_png8(out / "0801.png").shape == (128, 128, 3)
    assert '"demosaic": "opencv-ea"' in (out / "isp.json").read_text()
    assert main(["isp", "--bench", str(div2k_bench), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_ddnet_option_errors(div2k_bench, tmp_path, capsys, monkeypatch):
    base = ["isp", "--bench", str(div2k_bench), "--out", str(tmp_path / "o")]
    assert main([*base, "--isp", "ddnet"]) == 2
    assert "--isp ddnet needs --ddnet CKPT" in capsys.readouterr().err
    assert main([*base, "--ddnet", str(tmp_path)]) == 2
    assert "--ddnet is only used with --isp ddnet" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "rddm.models.ddnet", None)  # makes the import fail, as without the extra
    with pytest.raises(MissingDependencyError, match=r"rddm\.models\.ddnet cannot be imported.*\[rddm\]"):
        load_ddnet(tmp_path)
    assert main([*base, "--isp", "ddnet", "--ddnet", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs the RDDM model package" in err and "--isp classical" in err and "Traceback" not in err


def _ddnet_available() -> bool:
    try:
        return importlib.util.find_spec("rddm.models.ddnet") is not None
    except ImportError:  # rddm.models itself fails to import (e.g. diffusers missing)
        return False


@pytest.mark.skipif(not _ddnet_available(), reason="rddm.models.ddnet is not importable (rddm extra)")
def test_tiny_random_ddnet_saved_and_loaded(div2k_bench, tmp_path, capsys):
    from rddm.models.ddnet import DDNet

    torch.manual_seed(0)
    DDNet(block_out_channels=(8, 16), layers_per_block=1).save_pretrained(tmp_path / "ckpt")
    fn, settings = make_isp("ddnet", ddnet=tmp_path / "ckpt")
    assert settings["isp"] == "ddnet" and settings["ddnet"] == str((tmp_path / "ckpt").resolve())
    b = Bench.load(div2k_bench)
    out = fn(b.raw_dn("0802"), b.meta("0802"))
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    # an untrained DDNet predicts a zero correction to the bilinear demosaic: the classical ISP's output
    assert np.abs(out.astype(int) - develop_raw(b.raw_dn("0802"), b.meta("0802")).astype(int)).max() <= 1
    assert main(["isp", "--bench", str(div2k_bench), "--out", str(tmp_path / "o"), "--isp", "ddnet", "--ddnet",
                 str(tmp_path / "ckpt")]) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 4
    assert main(["isp", "--bench", str(div2k_bench), "--out", str(tmp_path / "o2"), "--isp", "ddnet", "--ddnet",
                 str(div2k_bench)]) == 2
    assert "not a DDNet checkpoint" in capsys.readouterr().err
