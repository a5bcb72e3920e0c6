"""``psnr_y`` / ``ssim_y`` (and RGB ``psnr`` / ``ssim``) against the installed pyiqa itself, offline (PSNR/SSIM
need no weights): the reference implementation is called with the options OSEDiff's and StableSR's scripts use
(``test_y_channel=True, color_space='ycbcr'``), on images read with OpenCV as those scripts read them."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from benchmarks.cli import main
from benchmarks.scoring import metrics as M
from benchmarks.scoring.fast import fast_scores, gaussian_1d

from .conftest import photo

N_PAIRS = 20


def _pairs(n=N_PAIRS, h=72, w=96):
    """``n`` (prediction, ground truth) uint8 pairs: photo crops with blur, noise, JPEG or a colour shift."""
    rng = np.random.default_rng(7)
    preds, gts = [], []
    for i in range(n):
        g = np.ascontiguousarray(photo(i, 300, 400)[(7 * i) % 200:][:h, (11 * i) % 300:][:, :w])
        kind = i % 4
        if kind == 0:
            p = cv2.GaussianBlur(g, (5, 5), 0.6 + 0.2 * i)
        elif kind == 1:
            p = np.clip(g + rng.normal(0, 1 + i, g.shape), 0, 255)
        elif kind == 2:
            ok, enc = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 10 + 3 * i])
            p = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        else:
            p = np.clip(g.astype(np.float64) * [1.05, 0.97, 1.0] + 3, 0, 255)
        preds.append(np.round(p).astype(np.uint8))
        gts.append(g)
    return preds, gts


def _pyiqa(name: str, preds, gts, **opts) -> np.ndarray:
    import pyiqa

    m = pyiqa.create_metric(name, device="cpu", **opts)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    return np.array([m(t(p), t(g)).item() for p, g in zip(preds, gts, strict=True)])


YCBCR = {"test_y_channel": True, "color_space": "ycbcr"}


@pytest.fixture(scope="module")
def pairs():
    return _pairs()


def test_gaussian_window_is_pyiqas():
    from pyiqa.matlab_utils import fspecial

    g = gaussian_1d()
    assert torch.allclose(torch.outer(g, g).float(), fspecial(11, 1.5, 1)[0, 0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_y_channel_metrics_equal_pyiqa(pairs, crop_border):
    preds, gts = pairs
    for kind, name in (("psnr", "psnr"), ("ssim", "ssim")):
        ref = _pyiqa(name, preds, gts, crop_border=crop_border, **YCBCR)
        ours = fast_scores(kind, True, preds, gts, crop_border=crop_border, batch_size=7)
        assert np.abs(ours - ref).max() < 1e-6, (kind, np.abs(ours - ref).max())
        assert np.ptp(ref) > (1.0 if kind == "psnr" else 0.05)  # the pairs span a real range of qualities


def test_rgb_metrics_equal_pyiqa(pairs):
    preds, gts = pairs
    ref_p, ref_s = _pyiqa("psnr", preds, gts), _pyiqa("ssimc", preds, gts)
    assert np.abs(fast_scores("psnr", False, preds, gts) - ref_p).max() < 1e-4
    assert np.abs(fast_scores("ssim", False, preds, gts) - ref_s).max() < 1e-5


def test_the_two_y_conventions_differ(pairs):
    """pyiqa's ``psnry`` takes YIQ's Y: not the YCbCr Y the SR papers use (the issue's 1.3 dB trap)."""
    preds, gts = pairs
    ycbcr = fast_scores("psnr", True, preds, gts)
    yiq = _pyiqa("psnry", preds, gts)
    rgb = fast_scores("psnr", False, preds, gts)
    assert np.abs(ycbcr - yiq).mean() > 0.5 and np.abs(ycbcr - rgb).mean() > 0.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_equals_cpu(pairs):
    preds, gts = pairs
    for kind, y in (("psnr", True), ("ssim", True), ("psnr", False), ("ssim", False)):
        cpu = fast_scores(kind, y, preds, gts)
        gpu = fast_scores(kind, y, preds, gts, device="cuda")
        assert np.abs(cpu - gpu).max() < (1e-3 if kind == "psnr" else 1e-4)


def test_score_gt_folder_cli_reads_like_opencv(pairs, tmp_path, capsys):
    """``score --gt DIR --pred DIR``: pairing by name (StableSR's LR-style HR names against ``_out`` outputs),
    per-image columns named by metric, values = pyiqa on images read with ``cv2.imread``, conventions recorded."""
    preds, gts = pairs
    gt_dir, pred_dir = tmp_path / "test_HR", tmp_path / "osediff"
    gt_dir.mkdir()
    pred_dir.mkdir()
    names = [f"Canon_{i + 1:03d}_LR4" for i in range(len(gts))]
    for n, p, g in zip(names, preds, gts, strict=True):
        cv2.imwrite(str(gt_dir / f"{n}.png"), g[..., ::-1])
        cv2.imwrite(str(pred_dir / f"{n.replace('_LR4', '')}_out.png"), p[..., ::-1])
    rc = main(["score", "--gt", str(gt_dir), "--pred", str(pred_dir), "--metrics", "psnr_y,ssim_y,psnr",
               "--crop-border", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    out_dir = tmp_path / "osediff-scores"
    with open(out_dir / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["key", "file", "psnr", "psnr_y", "ssim_y"] and len(rows) == N_PAIRS
    assert rows[0]["key"] == "Canon_001_LR4" and rows[0]["file"] == "Canon_001_out.png"
    rd = lambda d, n: cv2.imread(str(d / n))[..., ::-1].copy()  # noqa: E731 - as OSEDiff's script reads
    cv_p = [rd(pred_dir, r["file"]) for r in rows]
    cv_g = [rd(gt_dir, r["key"] + ".png") for r in rows]
    ref = _pyiqa("psnr", cv_p, cv_g, crop_border=2, **YCBCR)
    assert np.abs(np.array([float(r["psnr_y"]) for r in rows]) - ref).max() < 1e-6
    ref = _pyiqa("ssim", cv_p, cv_g, crop_border=2, **YCBCR)
    assert np.abs(np.array([float(r["ssim_y"]) for r in rows]) - ref).max() < 1e-6
    s = json.loads((out_dir / "summary.json").read_text())
    assert s["metrics"]["psnr_y"]["convention"] == "Y of YCbCr (BT.601), crop 2"
    assert s["metrics"]["psnr"]["convention"] == "RGB, 3 channels, crop 2"
    assert s["metrics"]["ssim_y"]["settings"]["options"] == {"type": "SSIM", "downsample": False,
                                                            "test_y_channel": True, "color_space": "ycbcr",
                                                            "crop_border": 2}
    assert s["gt_dir"] == str(gt_dir.resolve()) and s["method"] == "osediff" and s["bench"]["layout"] == "folder"
    out = capsys.readouterr().out
    assert "PSNR-Y" in out and "[Y of YCbCr (BT.601), crop 2]" in out


def test_score_impl_pyiqa_equals_fast(bench_copy, isp_dir):
    from benchmarks.scoring.score import score

    a = score(bench_copy, isp_dir, "fast", "psnr,ssim,psnr_y,ssim_y", device="cpu", impl="fast")
    b = score(bench_copy, isp_dir, "ref", "psnr,ssim,psnr_y,ssim_y", device="cpu", impl="pyiqa")
    for k in a.per_image:
        for m in ("psnr", "psnr_y"):
            assert abs(a.per_image[k][m] - b.per_image[k][m]) < 1e-4
        for m in ("ssim", "ssim_y"):
            assert abs(a.per_image[k][m] - b.per_image[k][m]) < 1e-5
    assert a.summary["metrics"]["ssim"]["settings"]["implementation"].startswith("benchmarks.scoring.fast")
    assert b.summary["metrics"]["ssim"]["settings"]["implementation"] == "pyiqa"
    lb = json.loads((bench_copy / "leaderboard.json").read_text())
    assert lb["entries"][0]["conventions"] == {"psnr": "RGB, 3 channels", "ssim": "RGB, 3 channels",
                                               "psnr_y": "Y of YCbCr (BT.601)",
                                               "ssim_y": "Y of YCbCr (BT.601), rounded to 0-255"}


def test_bad_options_are_config_errors(bench_copy, isp_dir, tmp_path, capsys):
    assert main(["score", "--bench", str(bench_copy), "--pred", str(isp_dir), "--method", "x",
                 "--metrics", "psnr", "--crop-border", "-1"]) == 2
    assert "--crop-border must be a non-negative integer" in capsys.readouterr().err
    assert main(["score", "--bench", str(bench_copy), "--pred", str(isp_dir), "--metrics", "psnr"]) == 2
    assert "--method" in capsys.readouterr().err
    assert M.METRICS["ssim_y"].y_only and not M.METRICS["ssim"].y_only and M.METRICS["psnr_y"].fast == "psnr"


def test_table_and_report_carry_conventions_and_layout(bench_copy, isp_dir, tmp_path):
    from benchmarks.report.html import build_report
    from benchmarks.report.table import render_markdown
    from benchmarks.scoring.score import score

    score(bench_copy, isp_dir, "ISP", "psnr,psnr_y,ssim_y", device="cpu", crop_border=4)
    md = render_markdown([bench_copy])
    assert "### DIV2K-Val (4 images, official download, INCOMPLETE build)" in md
    assert "| Convention |" in md and "PSNR-Y↑" in md
    ours = next(line for line in md.splitlines() if line.startswith("| ISP |"))
    assert ours.endswith("| PSNR: RGB, 3 channels, crop 4; PSNR-Y: Y of YCbCr (BT.601), crop 4; "
                         "SSIM-Y: Y of YCbCr (BT.601), rounded to 0-255, crop 4 |")
    pub = next(line for line in md.splitlines() if line.startswith("| RDDM (Ours-s1) |"))
    assert pub.endswith("| PSNR/SSIM: RGB, 3 channels |")  # the paper: "3 channels"
    doc = build_report([bench_copy], tmp_path / "r.html", crops=1).read_text()
    assert "{&#x27;policy&#x27;" not in doc and "{'policy'" not in doc
    assert "centre 128×128 crop" in doc and "source: official download" in doc
    assert "<th>Convention</th>" in doc and "PSNR-Y: Y of YCbCr (BT.601), crop 4" in doc


def test_speed_script_prints_both_times_and_the_ratio(capsys):
    import re

    from benchmarks.perf.scoring import main as perf_main

    assert perf_main(["--images", "2", "--size", "32", "--conventions", "y"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pyiqa loop: [0-9.]+ s$", out, re.M) and re.search(r"^ours: [0-9.]+ s$", out, re.M)
    assert re.search(r"^ratio pyiqa/ours: [0-9.]+x$", out, re.M)
    diffs = [float(x) for x in re.findall(r"^(?:psnr_y|ssim_y)\s.*x\s+([0-9.e+-]+)$", out, re.M)]
    assert len(diffs) == 2 and max(diffs) < 1e-5
