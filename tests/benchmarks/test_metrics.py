"""Metric conventions, pairing by name, and the offline weights pre-check (no weights needed here)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import skimage.metrics
import torch

from benchmarks.errors import DownloadRefusedError, MissingWeightsError, PairingError
from benchmarks.scoring import metrics as M
from benchmarks.scoring.pairing import candidate_keys, pair_predictions
from benchmarks.scoring.weights import (ENV_VAR, check_weights, offline_hub, require_weights, required_weights,
                                        resolve_weights_dir)
from rawsynth.errors import ConfigError

from .conftest import photo, write_rgb


def _distortions(gt: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ok, jpg = cv2.imencode(".jpg", gt[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
    return {
        "noise": np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8),
        "blur": cv2.GaussianBlur(gt, (0, 0), 2.0),
        "jpeg": cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1].copy(),
        "down-up": cv2.resize(cv2.resize(gt, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA), gt.shape[1::-1],
                              interpolation=cv2.INTER_CUBIC),
    }


def test_psnr_and_ssim_agree_with_scikit_image():
    """pyiqa psnr / ssimc (our psnr / ssim) vs scikit-image on real photos and realistic distortions: the
    difference stays below 1e-3 (dB for PSNR)."""
    psnr, ssim = M.create_metric("psnr"), M.create_metric("ssim")
    t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    worst = [0.0, 0.0]
    for i in range(4):
        gt = photo(i, 128, 128)
        names, preds = zip(*_distortions(gt).items(), strict=True)
        gts = [gt] * len(preds)
        ours_p = psnr(t(preds), t(gts)).flatten().tolist()
        ours_s = ssim(t(preds), t(gts)).flatten().tolist()
        for name, pred, op, os_ in zip(names, preds, ours_p, ours_s, strict=True):
            ref_p = skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=255)
            ref_s = skimage.metrics.structural_similarity(gt, pred, channel_axis=-1, gaussian_weights=True,
                                                          sigma=1.5, use_sample_covariance=False, data_range=255)
            assert abs(op - ref_p) < 1e-3, (i, name, op, ref_p)
            assert abs(os_ - ref_s) < 1e-3, (i, name, os_, ref_s)
            worst = [max(worst[0], abs(op - ref_p)), max(worst[1], abs(os_ - ref_s))]
    print(f"max |PSNR - skimage| = {worst[0]:.2e} dB, max |SSIM - skimage| = {worst[1]:.2e}")


def test_ssim_is_the_three_channel_variant():
    assert M.METRICS["ssim"].pyiqa == "ssimc"
    assert M.metric_settings("ssim")["options"]["test_y_channel"] is False
    assert M.metric_settings("psnr")["options"]["test_y_channel"] is False


def test_parse_metrics_and_device():
    assert M.parse_metrics(None) == list(M.DEFAULT_METRICS)  # the paper's columns
    assert M.parse_metrics("all") == list(M.METRICS) and {"psnr_y", "ssim_y"} <= set(M.METRICS)
    assert M.parse_metrics("SSIM, psnr") == ["psnr", "ssim"]  # table order
    with pytest.raises(ConfigError, match="unknown metric"):
        M.parse_metrics("psnr,ssimc")
    assert M.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            M.resolve_device("cuda")


def test_candidate_keys():
    assert candidate_keys("0801") == ["0801"]
    assert "0801" in candidate_keys("0801x4") and "Canon_001" in candidate_keys("Canon_001_LR4_out")
    assert "DSC_1454" in candidate_keys("DSC_1454_x1") and "0801" in candidate_keys("0801_seesr", ("_seesr",))


def _preds(d, names, size=(8, 8)):
    for n in names:
        write_rgb(d / n, np.zeros((*size, 3), np.uint8))
    return d


def test_pairing_by_name_not_order(tmp_path):
    keys = ["Canon_001", "Canon_002", "Nikon_001"]
    d = _preds(tmp_path, ["Nikon_001_out.png", "Canon_002_LR4.png", "Canon_001_HR.png"])
    (tmp_path / "log.txt").write_text("x")
    p = pair_predictions(d, keys)
    assert {k: f.name for k, f in p.files.items()} == {"Canon_001": "Canon_001_HR.png",
                                                        "Canon_002": "Canon_002_LR4.png",
                                                        "Nikon_001": "Nikon_001_out.png"}
    assert p.ignored == ["log.txt"]


def test_pairing_lists_every_problem_at_once(tmp_path):
    keys = ["0801", "0802", "0803", "0804"]
    d = _preds(tmp_path, ["0801.png", "0801_out.png", "0802.png", "0901.png", "zebra.jpg"])
    with pytest.raises(PairingError) as e:
        pair_predictions(d, keys)
    err = e.value
    assert err.missing == ["0803", "0804"] and err.extra == ["0901.png", "zebra.jpg"]
    assert err.duplicates == {"0801": ["0801.png", "0801_out.png"]}
    msg = str(err)
    assert "2 missing" in msg and "2 extra" in msg and "duplicate for key 0801" in msg and "fix:" in msg
    with pytest.raises(PairingError) as e:  # --allow-missing forgives only the missing ones
        pair_predictions(d, keys, allow_missing=True)
    assert e.value.missing == [] and e.value.extra


def test_weights_folder_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert resolve_weights_dir() == tmp_path / "th"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "w"))
    assert resolve_weights_dir() == tmp_path / "w"
    assert resolve_weights_dir(tmp_path / "cli") == tmp_path / "cli"


def test_required_files_by_their_expected_names(tmp_path):
    names = {w.metric: [] for w in required_weights(M.METRICS)}
    for w in required_weights(M.METRICS):
        names[w.metric].append(w.relpath)
    assert "psnr" not in names and "ssim" not in names
    assert names == {
        "lpips": ["hub/checkpoints/alexnet-owt-7be5be79.pth", "hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"],
        "dists": ["hub/checkpoints/vgg16-397923af.pth", "hub/pyiqa/DISTS_weights-f5e65c96.pth"],
        "fid": ["hub/pyiqa/pt_inception-2015-12-05-6726825d.pth"],
        "niqe": ["hub/pyiqa/niqe_modelparameters.mat"],
        "musiq": ["hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth"],
        "clipiqa": ["hub/clip/RN50.pt"],
    }
    report = check_weights(["psnr", "lpips", "niqe"], tmp_path)
    assert [w.name for w in report.missing] == ["alexnet-owt-7be5be79.pth", "LPIPS_v0.1_alex-df73285e.pth",
                                                "niqe_modelparameters.mat"]
    with pytest.raises(MissingWeightsError) as e:
        require_weights(["lpips", "niqe"], tmp_path)
    msg = str(e.value)
    assert f"{tmp_path}/hub/checkpoints/alexnet-owt-7be5be79.pth" in msg and "nothing was downloaded" in msg
    assert "--allow-download" in msg and "weights --download" in msg
    assert check_weights(["psnr", "ssim"], tmp_path).ok


def test_offline_hub_refuses_downloads_and_restores_state(tmp_path):
    import pyiqa.utils.download_util as du
    import torch.hub

    before = (torch.hub.get_dir(), du.DEFAULT_CACHE_DIR, torch.hub.download_url_to_file)
    with offline_hub(tmp_path) as root:
        assert root == tmp_path and torch.hub.get_dir() == str(tmp_path / "hub")
        assert du.DEFAULT_CACHE_DIR == str(tmp_path / "hub" / "pyiqa")
        with pytest.raises(DownloadRefusedError, match="downloads are off"):
            torch.hub.load_state_dict_from_url("https://example.invalid/x-0123abcd.pth")
        with pytest.raises(DownloadRefusedError):
            du.load_file_from_url("https://example.invalid/y.pth")
    assert (torch.hub.get_dir(), du.DEFAULT_CACHE_DIR, torch.hub.download_url_to_file) == before
    assert not os.path.exists(tmp_path / "hub" / "checkpoints" / "x-0123abcd.pth")


def test_score_checks_weights_before_computing(bench_copy, isp_dir, tmp_path, monkeypatch, capsys):
    from benchmarks.cli import main

    monkeypatch.setattr(M, "create_metric", lambda *a, **k: pytest.fail("a metric was built"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "empty"))
    rc = main(["score", "--bench", str(bench_copy), "--pred", str(isp_dir), "--method", "x", "--metrics",
               "psnr,dists,musiq"])
    err = capsys.readouterr().err
    assert rc == 2 and "3 weight file(s) missing" in err
    for name in ("vgg16-397923af.pth", "DISTS_weights-f5e65c96.pth", "musiq_koniq_ckpt-e95806b9.pth"):
        assert name in err
    assert not (bench_copy / "leaderboard.json").exists()
